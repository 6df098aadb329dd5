//! Roles, actions and the permission table (45 CFR 164.312(a)(1) access control).
//!
//! Two questions decide every request: may this role perform this action at all
//! ([`Role::permits`]), and, for actions on one patient, is the patient in the user's scope
//! ([`patient_access`]). Both are plain functions of their inputs, so the whole table is tested
//! here and the server only feeds it facts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a user is in the organisation; decides what they may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Treats patients; reads and writes clinical content of their care team's patients and may
    /// use break-glass access.
    Clinician,
    /// Cares for patients; reads their care team's patients.
    Nurse,
    /// Manages users, care teams and tokens; never reads clinical content.
    Admin,
    /// Reviews the audit log and break-glass grants; never reads clinical content.
    ComplianceOfficer,
    /// A machine integration using a bearer token (for example an EHR feed).
    Service,
}

impl Role {
    /// Every role, in a fixed order (used by tables and tests).
    pub const ALL: [Role; 5] = [
        Role::Clinician,
        Role::Nurse,
        Role::Admin,
        Role::ComplianceOfficer,
        Role::Service,
    ];

    /// The name used in the API, the database and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Admin => "admin",
            Role::ComplianceOfficer => "compliance_officer",
            Role::Service => "service",
        }
    }

    /// Whether accounts of this role sign in with a password and TOTP (all but service accounts).
    pub fn is_interactive(self) -> bool {
        self != Role::Service
    }

    /// The permission table: may this role perform `action` at all?
    pub fn permits(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Clinician => matches!(
                action,
                PatientList
                    | PatientRead
                    | PatientCreate
                    | PatientUpdate
                    | BreakGlass
                    | ConversationRead
                    | AssistantUse
                    | NoteWrite
            ),
            Role::Nurse => matches!(
                action,
                PatientList | PatientRead | PatientUpdate | ConversationRead | NoteWrite
            ),
            Role::Admin => matches!(
                action,
                UserRead | UserManage | CareTeamManage | PatientAssignCareTeam | TokenManage
            ),
            Role::ComplianceOfficer => matches!(action, AuditRead | BreakGlassReview | UserRead),
            Role::Service => matches!(action, PatientCreate | PatientUpdate | NoteWrite),
        }
    }

    /// Whether this role's patient actions are limited to its care teams. Service accounts act
    /// for an integration, not a person, and are not members of care teams.
    pub fn is_care_team_scoped(self) -> bool {
        matches!(self, Role::Clinician | Role::Nurse)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a role name that does not exist.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}; expected one of clinician, nurse, admin, compliance_officer, service")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Something a user may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List or search patients (only those in scope are returned).
    PatientList,
    /// Read one patient's record.
    PatientRead,
    /// Register a patient.
    PatientCreate,
    /// Change a patient's demographics.
    PatientUpdate,
    /// Put a patient under the care of teams.
    PatientAssignCareTeam,
    /// Open a patient outside one's care teams, with a reason.
    BreakGlass,
    /// List users.
    UserRead,
    /// Create, disable and reset users.
    UserManage,
    /// Create care teams and change their members.
    CareTeamManage,
    /// Create and revoke service tokens.
    TokenManage,
    /// Read the audit log.
    AuditRead,
    /// Review break-glass grants.
    BreakGlassReview,
    /// Read the assistant conversations and clinical notes of a patient.
    ConversationRead,
    /// Ask the assistant about a patient: start, continue and close conversations, and give
    /// feedback on its answers.
    AssistantUse,
    /// Add a clinical note to a patient's record (the assistant's patient context).
    NoteWrite,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 15] = [
        Action::PatientList,
        Action::PatientRead,
        Action::PatientCreate,
        Action::PatientUpdate,
        Action::PatientAssignCareTeam,
        Action::BreakGlass,
        Action::UserRead,
        Action::UserManage,
        Action::CareTeamManage,
        Action::TokenManage,
        Action::AuditRead,
        Action::BreakGlassReview,
        Action::ConversationRead,
        Action::AssistantUse,
        Action::NoteWrite,
    ];

    /// A stable name for audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PatientList => "patient.list",
            Action::PatientRead => "patient.read",
            Action::PatientCreate => "patient.create",
            Action::PatientUpdate => "patient.update",
            Action::PatientAssignCareTeam => "patient.assign_care_team",
            Action::BreakGlass => "patient.break_glass",
            Action::UserRead => "user.read",
            Action::UserManage => "user.manage",
            Action::CareTeamManage => "care_team.manage",
            Action::TokenManage => "token.manage",
            Action::AuditRead => "audit.read",
            Action::BreakGlassReview => "break_glass.review",
            Action::ConversationRead => "conversation.read",
            Action::AssistantUse => "assistant.use",
            Action::NoteWrite => "note.write",
        }
    }
}

/// What is known about the relation between a user and one patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatientRelation {
    /// The patient is assigned to one of the user's care teams.
    pub on_care_team: bool,
    /// The user holds an unexpired break-glass grant for this patient.
    pub break_glass: bool,
}

/// The answer to "may this user do this to this patient?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientAccess {
    /// Allowed because the patient is on the user's care team, or the role is not team-scoped.
    Allowed,
    /// Allowed through an active break-glass grant (the access is flagged in the audit log).
    AllowedByBreakGlass,
    /// Refused: the role never performs this action.
    RoleDenied,
    /// Refused: the patient is outside the user's care teams; a break-glass grant would open it.
    OutOfScopeBreakGlassPossible,
    /// Refused: the patient is outside the user's care teams.
    OutOfScope,
}

impl PatientAccess {
    /// Whether the request may go ahead.
    pub fn is_allowed(self) -> bool {
        matches!(
            self,
            PatientAccess::Allowed | PatientAccess::AllowedByBreakGlass
        )
    }
}

/// Decides an action on one patient.
pub fn patient_access(role: Role, action: Action, relation: PatientRelation) -> PatientAccess {
    if !role.permits(action) {
        return PatientAccess::RoleDenied;
    }
    if !role.is_care_team_scoped() || relation.on_care_team {
        return PatientAccess::Allowed;
    }
    if relation.break_glass {
        return PatientAccess::AllowedByBreakGlass;
    }
    if role.permits(Action::BreakGlass) {
        PatientAccess::OutOfScopeBreakGlassPossible
    } else {
        PatientAccess::OutOfScope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn role_names_round_trip_and_unknown_is_rejected() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn admins_and_compliance_officers_never_read_clinical_content() {
        for role in [Role::Admin, Role::ComplianceOfficer, Role::Service] {
            assert!(!role.permits(Action::PatientRead), "{role}");
            assert!(!role.permits(Action::ConversationRead), "{role}");
            assert!(!role.permits(Action::AssistantUse), "{role}");
            assert!(!role.permits(Action::PatientList), "{role}");
        }
    }

    #[test]
    fn only_clinicians_break_glass() {
        let who: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.permits(Action::BreakGlass))
            .collect();
        assert_eq!(who, vec![Role::Clinician]);
    }

    #[test]
    fn only_admins_manage_users_and_tokens() {
        for a in [
            Action::UserManage,
            Action::TokenManage,
            Action::CareTeamManage,
        ] {
            let who: Vec<Role> = Role::ALL.into_iter().filter(|r| r.permits(a)).collect();
            assert_eq!(who, vec![Role::Admin], "{a:?}");
        }
    }

    #[rstest]
    #[case(Role::Clinician, true, false, PatientAccess::Allowed)]
    #[case(Role::Clinician, false, true, PatientAccess::AllowedByBreakGlass)]
    #[case(
        Role::Clinician,
        false,
        false,
        PatientAccess::OutOfScopeBreakGlassPossible
    )]
    #[case(Role::Nurse, true, false, PatientAccess::Allowed)]
    #[case(Role::Nurse, false, false, PatientAccess::OutOfScope)]
    #[case(Role::Admin, true, false, PatientAccess::RoleDenied)]
    #[case(Role::ComplianceOfficer, true, true, PatientAccess::RoleDenied)]
    #[case(Role::Service, false, false, PatientAccess::RoleDenied)]
    fn reading_one_patient(
        #[case] role: Role,
        #[case] on_care_team: bool,
        #[case] break_glass: bool,
        #[case] expected: PatientAccess,
    ) {
        let rel = PatientRelation {
            on_care_team,
            break_glass,
        };
        assert_eq!(patient_access(role, Action::PatientRead, rel), expected);
    }

    #[test]
    fn service_updates_any_patient_without_care_team() {
        let got = patient_access(
            Role::Service,
            Action::PatientUpdate,
            PatientRelation::default(),
        );
        assert_eq!(got, PatientAccess::Allowed);
    }

    #[test]
    fn action_names_are_unique() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
