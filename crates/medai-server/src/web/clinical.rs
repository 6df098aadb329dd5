//! Clinician and nurse pages: my patients (search by name or MRN), a patient's page with
//! demographics and conversations, break-glass access to a patient outside the care team, the
//! conversation view where answers stream in (or, without script, appear when complete), and
//! feedback on answers. Every action goes through the JSON API's handler for it.

use super::page::{
    error_page, render, see_other, seg, sentence, when, CsrfForm, Lenient, Nav, NoFields,
    PageError, PageResult, WebUser,
};
use crate::api::assistant::{
    self as api_assistant, ConversationIn, FeedbackIn, MessageOut, PageQuery, QuestionIn,
};
use crate::api::patients::{self as api_patients, BreakGlassRequest, PatientQuery};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use medai_core::Action;
use medai_store::{break_glass, care_teams, conversations, StoreError};
use serde::Deserialize;

/// An empty form field is an absent one.
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

struct PatientRow {
    id: String,
    mrn: String,
    name: String,
    date_of_birth: String,
    sex: &'static str,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage {
    nav: Nav,
    name: String,
    mrn: String,
    searched: bool,
    rows: Vec<PatientRow>,
}

/// The patient search.
#[derive(Deserialize, Default)]
pub struct SearchQuery {
    name: Option<String>,
    mrn: Option<String>,
}

/// `GET /patients?name=&mrn=`: the patients on the user's care teams, searched by name or MRN.
pub async fn patients(
    State(st): State<AppState>,
    u: WebUser,
    Lenient(q): Lenient<SearchQuery>,
) -> PageResult {
    let (name, mrn) = (given(q.name), given(q.mrn));
    let query = PatientQuery {
        mrn: mrn.clone(),
        name: name.clone(),
        date_of_birth: None,
        sex: None,
        limit: Some(100),
        offset: None,
    };
    let Json(found) = api_patients::list(State(st.clone()), u.p.clone(), ApiQuery(query)).await?;
    let rows = found
        .into_iter()
        .map(|p| PatientRow {
            name: format!("{}, {}", p.family_name, p.given_name),
            id: p.id,
            mrn: p.mrn,
            date_of_birth: p.date_of_birth,
            sex: p.sex.as_str(),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &PatientsPage {
            nav: u.nav(&st, "patients"),
            searched: name.is_some() || mrn.is_some(),
            name: name.unwrap_or_default(),
            mrn: mrn.unwrap_or_default(),
            rows,
        },
    ))
}

struct ConversationRow {
    id: String,
    title: String,
    status: String,
    updated: String,
    mine: bool,
}

#[derive(Template)]
#[template(path = "patient.html")]
struct PatientPage {
    nav: Nav,
    id: String,
    mrn: String,
    name: String,
    date_of_birth: String,
    sex: &'static str,
    teams: Vec<String>,
    grant: Option<String>,
    granted_now: bool,
    conversations: Vec<ConversationRow>,
    can_start: bool,
    max_title: usize,
}

#[derive(Template)]
#[template(path = "break_glass.html")]
struct BreakGlassPage {
    nav: Nav,
    id: String,
    duration: String,
    min_chars: usize,
    reason: String,
    error: Option<String>,
}

fn break_glass_page(
    st: &AppState,
    u: &WebUser,
    id: &str,
    reason: String,
    error: Option<String>,
    status: StatusCode,
) -> axum::response::Response {
    render(
        status,
        &BreakGlassPage {
            nav: u.nav(st, "patients"),
            id: id.to_owned(),
            duration: crate::web::page::duration_phrase(
                st.config.auth.break_glass_duration.as_secs(),
            ),
            min_chars: st.config.auth.break_glass_min_reason_chars,
            reason,
            error,
        },
    )
}

/// The patient page's query.
#[derive(Deserialize, Default)]
pub struct PatientPageQuery {
    granted: Option<String>,
}

/// `GET /patients/{id}`: demographics and conversations. A clinician outside the patient's care
/// teams gets the break-glass form instead (the refusal is audited by the API's check).
pub async fn patient(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    Lenient(q): Lenient<PatientPageQuery>,
) -> PageResult {
    let got = api_patients::get(State(st.clone()), u.p.clone(), ApiPath(id.clone())).await;
    let Json(pt) = match got {
        Ok(x) => x,
        Err(ApiError::Forbidden {
            code: "outside_care_team",
            ..
        }) if u.can(Action::BreakGlass) => {
            return Ok(break_glass_page(
                &st,
                &u,
                &id,
                String::new(),
                None,
                StatusCode::FORBIDDEN,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut conversations = Vec::new();
    if u.can(Action::ConversationRead) {
        let page = PageQuery {
            limit: Some(100),
            offset: None,
        };
        let Json(list) = api_assistant::list_conversations(
            State(st.clone()),
            u.p.clone(),
            ApiPath(id.clone()),
            ApiQuery(page),
        )
        .await?;
        conversations = list
            .into_iter()
            .map(|c| ConversationRow {
                mine: c.clinician_id == u.p.user.id,
                id: c.id,
                title: c.title,
                status: c.status,
                updated: super::page::short_time(&c.updated_at),
            })
            .collect();
    }
    let now = st.now();
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let all = care_teams::list(&mut conn).await?;
    let teams = all
        .into_iter()
        .filter(|t| pt.care_team_ids.contains(&t.id))
        .map(|t| t.name)
        .collect();
    let grant = if u.p.user.role.is_care_team_scoped()
        && !medai_store::patients::on_users_care_team(&mut conn, &u.p.user.id, &id).await?
    {
        break_glass::active(&mut conn, &u.p.user.id, &id, now)
            .await?
            .map(|g| {
                let mins = u64::try_from((g.expires_at - now + 59) / 60).unwrap_or(0);
                format!(
                    "{} (until {})",
                    crate::web::page::duration_phrase(mins * 60),
                    when(g.expires_at)
                )
            })
    } else {
        None
    };
    drop(conn);
    Ok(render(
        StatusCode::OK,
        &PatientPage {
            nav: u.nav(&st, "patients"),
            name: format!("{} {}", pt.given_name, pt.family_name),
            id: pt.id,
            mrn: pt.mrn,
            date_of_birth: pt.date_of_birth,
            sex: pt.sex.as_str(),
            teams,
            granted_now: q.granted.is_some() && grant.is_some(),
            grant,
            conversations,
            can_start: u.can(Action::AssistantUse),
            max_title: api_assistant::MAX_TITLE_CHARS,
        },
    ))
}

/// The break-glass form.
#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

/// `POST /patients/{id}/break-glass`: requests time-limited access with a reason, then opens the
/// patient page (which shows the time left).
pub async fn break_glass(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<ReasonForm>,
) -> PageResult {
    let req = BreakGlassRequest {
        reason: f.reason.clone(),
    };
    match api_patients::break_glass(
        State(st.clone()),
        u.p.clone(),
        ApiPath(id.clone()),
        ApiJson(req),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!("/patients/{}?granted=1", seg(&id)))),
        Err(ApiError::Conflict {
            code: "not_needed", ..
        }) => Ok(see_other(&format!("/patients/{}", seg(&id)))),
        Err(e @ ApiError::Unprocessable { .. }) => Ok(break_glass_page(
            &st,
            &u,
            &id,
            f.reason.chars().take(1000).collect(),
            Some(sentence(&e.public_message())),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
        Err(e) => Err(e.into()),
    }
}

/// The new-conversation form.
#[derive(Deserialize)]
pub struct TitleForm {
    #[serde(default)]
    title: String,
}

/// `POST /patients/{id}/conversations`: starts a conversation and opens it.
pub async fn new_conversation(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<TitleForm>,
) -> PageResult {
    let (_, Json(c)) = api_assistant::create_conversation(
        State(st),
        u.p,
        ApiPath(id),
        ApiJson(ConversationIn { title: f.title }),
    )
    .await?;
    Ok(see_other(&format!("/conversations/{}", seg(&c.id))))
}

struct Escalation {
    title: String,
    notice: String,
}

struct MessageView {
    id: String,
    question: bool,
    text: String,
    created: String,
    escalations: Vec<Escalation>,
    model: String,
    helpful: Option<String>,
    verdict: Option<String>,
    comment: String,
    latest: bool,
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    nav: Nav,
    id: String,
    patient_id: String,
    title: String,
    open: bool,
    can_ask: bool,
    can_feedback: bool,
    messages: Vec<MessageView>,
    alert: Vec<Escalation>,
    saved: bool,
    max_question: usize,
    max_comment: usize,
}

fn escalation(st: &AppState, rule_id: &str) -> Escalation {
    match st
        .assistant
        .rules
        .rules()
        .iter()
        .find(|r| r.id() == rule_id)
    {
        Some(r) => Escalation {
            title: r.title().to_owned(),
            notice: r.notice().to_owned(),
        },
        None => Escalation {
            title: rule_id.to_owned(),
            notice: String::new(),
        },
    }
}

fn model_of(m: &MessageOut) -> String {
    let (id, version) = api_assistant::model_of(m.provenance.as_ref());
    format!("{id}, version {version}")
}

/// The conversation page's query.
#[derive(Deserialize, Default)]
pub struct ConversationQuery {
    feedback: Option<String>,
}

/// `GET /conversations/{id}`: the messages, escalation notices, model and version under each
/// answer, feedback forms, and the question form (streamed by script, posted without).
pub async fn conversation(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    Lenient(q): Lenient<ConversationQuery>,
) -> PageResult {
    let Json(d) =
        api_assistant::get_conversation(State(st.clone()), u.p.clone(), ApiPath(id)).await?;
    let n = d.messages.len();
    let me = u.p.user.id.clone();
    let mut alert = Vec::new();
    let messages: Vec<MessageView> = d
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let question = m.kind == "question";
            let escalations: Vec<Escalation> =
                m.escalations.iter().map(|r| escalation(&st, r)).collect();
            let mine = m.feedback.iter().find(|f| f.user_id == me);
            MessageView {
                id: m.id.clone(),
                question,
                text: m.text.clone(),
                created: super::page::short_time(&m.created_at),
                escalations,
                model: if question { String::new() } else { model_of(m) },
                helpful: mine.and_then(|f| f.helpful.clone()),
                verdict: mine.and_then(|f| f.verdict.clone()),
                comment: mine.and_then(|f| f.comment.clone()).unwrap_or_default(),
                latest: i + 1 == n,
            }
        })
        .collect();
    if let Some(last_q) = d.messages.iter().rev().find(|m| m.kind == "question") {
        alert = last_q
            .escalations
            .iter()
            .map(|r| escalation(&st, r))
            .collect();
    }
    let open = d.conversation.status == "open";
    let page = ConversationPage {
        nav: u.nav(&st, "patients"),
        can_ask: open && d.conversation.clinician_id == me && u.can(Action::AssistantUse),
        can_feedback: u.can(Action::AssistantUse),
        open,
        id: d.conversation.id,
        patient_id: d.conversation.patient_id,
        title: d.conversation.title,
        messages,
        alert,
        saved: q.feedback.is_some(),
        max_question: api_assistant::MAX_QUESTION_CHARS,
        max_comment: api_assistant::MAX_COMMENT_CHARS,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The question form.
#[derive(Deserialize)]
pub struct AskForm {
    #[serde(default)]
    text: String,
}

/// The longest streamed answer the no-script path reads, in bytes.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// `POST /conversations/{id}/ask`: the no-script path. Asks through the API's streaming handler,
/// waits for the whole answer, then shows the conversation with it.
pub async fn ask(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<AskForm>,
) -> PageResult {
    let resp = api_assistant::ask(
        State(st),
        u.p,
        ApiPath(id.clone()),
        ApiJson(QuestionIn { text: f.text }),
    )
    .await?;
    let body = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the answer stream: {e}")))?;
    let text = String::from_utf8_lossy(&body);
    if text.contains("event: error") {
        return Err(PageError(ApiError::Model {
            status: StatusCode::BAD_GATEWAY,
            code: "interrupted",
            message: "the answer was interrupted; nothing was stored; ask again".into(),
            retry_after: None,
        }));
    }
    Ok(see_other(&format!("/conversations/{}#latest", seg(&id))))
}

/// `POST /conversations/{id}/close`: closes the conversation.
pub async fn close(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> PageResult {
    let _closed = api_assistant::close_conversation(State(st), u.p, ApiPath(id.clone())).await?;
    Ok(see_other(&format!("/conversations/{}", seg(&id))))
}

/// The feedback form.
#[derive(Deserialize)]
pub struct FeedbackForm {
    helpful: Option<String>,
    verdict: Option<String>,
    comment: Option<String>,
}

/// `POST /messages/{id}/feedback`: records the user's feedback on an answer and returns to it.
pub async fn feedback(
    State(st): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<FeedbackForm>,
) -> PageResult {
    let conversation_id = {
        let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
        conversations::message_owner(&mut conn, &id)
            .await?
            .ok_or(ApiError::NotFound("message"))?
            .0
    };
    let req = FeedbackIn {
        helpful: given(f.helpful),
        verdict: given(f.verdict),
        comment: given(f.comment),
    };
    match api_assistant::put_feedback(State(st), u.p, ApiPath(id.clone()), ApiJson(req)).await {
        Ok(_) => Ok(see_other(&format!(
            "/conversations/{}?feedback=saved#m-{}",
            seg(&conversation_id),
            seg(&id)
        ))),
        Err(e @ ApiError::Unprocessable { .. }) => Ok(error_page(&e)),
        Err(e) => Err(e.into()),
    }
}
