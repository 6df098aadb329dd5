//! Audit events (45 CFR 164.312(b)): who did what, to which patient, when, with what outcome.
//!
//! Events carry identifiers only, never names, notes or other PHI. The writer that stores them
//! lives in the storage crate behind one function, so a later change (a tamper-evident log) has
//! one place to go.

use serde::{Deserialize, Serialize};

/// Whether the attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was tried and failed (bad credentials, invalid code).
    Failure,
    /// It was refused by policy (permission, scope, lockout).
    Denied,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audit event, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: i64,
    /// The acting user's id, if known (none for a failed login of an unknown user).
    pub actor_id: Option<String>,
    /// The acting user's role, or `cli` / `system`.
    pub actor_role: Option<String>,
    /// What happened, e.g. `auth.login`, `patient.read`, `access.denied`.
    pub action: String,
    /// The user the action was about (user management), if any.
    pub target_user_id: Option<String>,
    /// The patient the action was about, if any.
    pub patient_id: Option<String>,
    /// Success, failure or denial.
    pub outcome: Outcome,
    /// The client address, if the action came over the network.
    pub client_addr: Option<String>,
    /// The request id, if the action came over the network.
    pub request_id: Option<String>,
    /// Extra non-PHI facts as a small JSON object (reason codes, counts, the attempted username
    /// of a failed login).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with the required fields; the rest are set with the builder methods.
    pub fn new(at: i64, action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            at,
            actor_id: None,
            actor_role: None,
            action: action.into(),
            target_user_id: None,
            patient_id: None,
            outcome,
            client_addr: None,
            request_id: None,
            detail: None,
        }
    }

    /// Sets the actor.
    pub fn actor(mut self, id: impl Into<String>, role: impl Into<String>) -> Self {
        self.actor_id = Some(id.into());
        self.actor_role = Some(role.into());
        self
    }

    /// Sets the patient.
    pub fn patient(mut self, id: impl Into<String>) -> Self {
        self.patient_id = Some(id.into());
        self
    }

    /// Sets the target user.
    pub fn target_user(mut self, id: impl Into<String>) -> Self {
        self.target_user_id = Some(id.into());
        self
    }

    /// Sets the client address and request id.
    pub fn origin(mut self, client_addr: Option<String>, request_id: Option<String>) -> Self {
        self.client_addr = client_addr;
        self.request_id = request_id;
        self
    }

    /// Adds facts to the detail object. Keys already set by the caller that built the event
    /// (for example the operating-system user of a CLI command) are kept; a key given again is
    /// replaced.
    pub fn detail(mut self, detail: &impl Serialize) -> Self {
        let Ok(serde_json::Value::Object(new)) = serde_json::to_value(detail) else {
            return self;
        };
        let mut merged = match self.detail.as_deref().map(serde_json::from_str) {
            Some(Ok(serde_json::Value::Object(old))) => old,
            _ => serde_json::Map::new(),
        };
        merged.extend(new);
        self.detail = serde_json::to_string(&merged).ok();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_fields_and_detail_is_json() {
        #[derive(Serialize)]
        struct D<'a> {
            reason: &'a str,
        }
        let e = AuditEvent::new(5, "auth.login", Outcome::Failure)
            .actor("u1", "nurse")
            .patient("p1")
            .origin(Some("127.0.0.1".into()), Some("r1".into()))
            .detail(&D {
                reason: "bad_password",
            });
        assert_eq!(e.actor_role.as_deref(), Some("nurse"));
        assert_eq!(e.patient_id.as_deref(), Some("p1"));
        assert_eq!(e.detail.as_deref(), Some(r#"{"reason":"bad_password"}"#));
        let e = e.detail(&serde_json::json!({ "os_user": "ops", "reason": "other" }));
        assert_eq!(
            e.detail.as_deref(),
            Some(r#"{"os_user":"ops","reason":"other"}"#)
        );
        assert_eq!(e.outcome.as_str(), "failure");
    }
}
