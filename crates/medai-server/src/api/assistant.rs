//! The assistant's records over HTTP: conversations about a patient (start, list, read, close),
//! clinician feedback on answers, and the clinical notes that form the assistant's patient
//! context. Every read and write is authorised against the patient (care team or break-glass)
//! and audited in the same transaction; the texts are stored encrypted.

use crate::api::patients::phi_fault;
use crate::authz::{require_owner, require_patient};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Principal};
use crate::metrics::{FeedbackLabels, ModelLabels};
use crate::session::{append_in, rfc3339};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use medai_core::audit::Outcome;
use medai_core::authz::PatientAccess;
use medai_core::Action;
use medai_store::conversations::{
    self, Conversation, Feedback, Helpful, Message, MessageKind, NewFeedback, Note, Status, Verdict,
};
use medai_store::{new_id, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The current PHI cipher for a request's transaction; a key the provider cannot unwrap ends the
/// request the way a field that cannot be decrypted does (the transaction is dropped first, so
/// the fault's audit event commits on its own).
macro_rules! cipher {
    ($st:ident, $p:ident, $tx:ident, $now:ident) => {
        match $st.phi.current(&mut $tx, &*$st.kek, $now).await {
            Ok(phi) => phi,
            Err(e) => {
                drop($tx);
                return Err(phi_fault(&$st, &$p, e).await);
            }
        }
    };
}

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest clinical note, in characters.
pub const MAX_NOTE_CHARS: usize = 20_000;
/// Longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// The window of the rolling accuracy gauge.
pub const ACCURACY_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// A conversation as returned by the API.
#[derive(Serialize, ToSchema)]
pub struct ConversationOut {
    /// Opaque id.
    pub id: String,
    /// The patient it is about.
    pub patient_id: String,
    /// The user who started it.
    pub clinician_id: String,
    /// Title.
    pub title: String,
    /// `open` or `closed`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 of the last activity.
    pub updated_at: String,
    /// RFC 3339, when closed.
    pub closed_at: Option<String>,
}

impl From<Conversation> for ConversationOut {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id,
            patient_id: c.patient_id,
            clinician_id: c.clinician_id,
            title: c.title,
            status: c.status.as_str().to_owned(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            closed_at: c.closed_at.map(rfc3339),
        }
    }
}

/// Feedback as returned by the API.
#[derive(Serialize, ToSchema)]
pub struct FeedbackOut {
    /// The answer judged.
    pub message_id: String,
    /// Who judged it.
    pub user_id: String,
    /// `helpful` or `not_helpful`.
    pub helpful: Option<String>,
    /// `correct`, `incorrect` or `unsafe`.
    pub verdict: Option<String>,
    /// Comment.
    pub comment: Option<String>,
    /// RFC 3339 of the latest submission.
    pub updated_at: String,
}

impl From<Feedback> for FeedbackOut {
    fn from(f: Feedback) -> Self {
        Self {
            message_id: f.message_id,
            user_id: f.user_id,
            helpful: f.helpful.map(|h| h.as_str().to_owned()),
            verdict: f.verdict.map(|v| v.as_str().to_owned()),
            comment: f.comment,
            updated_at: rfc3339(f.updated_at),
        }
    }
}

/// A message as returned by the API.
#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    /// Opaque id.
    pub id: String,
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// `question` or `answer`.
    pub kind: String,
    /// The asking user (questions).
    pub author_id: Option<String>,
    /// The text.
    pub text: String,
    /// How an answer was produced: provider, model, version, parameters, prompt template
    /// version, de-identification counts, latency and tokens.
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<serde_json::Value>,
    /// Safety rules that fired on the question and context.
    pub escalations: Vec<String>,
    /// Feedback on an answer.
    pub feedback: Vec<FeedbackOut>,
    /// RFC 3339.
    pub created_at: String,
}

impl MessageOut {
    fn new(m: Message, feedback: Vec<Feedback>) -> Self {
        Self {
            id: m.id,
            seq: m.seq,
            kind: m.kind.as_str().to_owned(),
            author_id: m.author_id,
            text: m.body,
            provenance: m.provenance,
            escalations: m.escalations,
            feedback: feedback.into_iter().map(FeedbackOut::from).collect(),
            created_at: rfc3339(m.created_at),
        }
    }
}

/// A conversation with its messages.
#[derive(Serialize, ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    pub conversation: ConversationOut,
    /// Its messages in order.
    pub messages: Vec<MessageOut>,
}

/// A request to start a conversation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationIn {
    /// Title, 1 to 200 characters.
    pub title: String,
}

/// Paging.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
}

fn page(q: &PageQuery) -> Result<(i64, i64), ApiError> {
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) || offset < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 100 and offset at least 0",
        ));
    }
    Ok((limit, offset))
}

/// Checks a free-text field: trimmed, not empty, at most `max` characters, no control
/// characters other than newlines and tabs.
fn text_field(name: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("{name} must not be empty"),
        ));
    }
    if v.chars().count() > max {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("{name} must be at most {max} characters"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("{name} must not contain control characters"),
        ));
    }
    Ok(v.to_owned())
}

fn access_detail(access: PatientAccess) -> serde_json::Value {
    serde_json::json!({ "break_glass": access == PatientAccess::AllowedByBreakGlass })
}

/// Starts a conversation about a patient.
#[utoipa::path(post, path = "/api/v1/patients/{id}/conversations", tag = "assistant",
    params(("id" = String, Path, description = "Patient id")), request_body = ConversationIn,
    responses((status = 201, body = ConversationOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_conversation(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(patient_id): ApiPath<String>,
    ApiJson(req): ApiJson<ConversationIn>,
) -> Result<(StatusCode, axum::Json<ConversationOut>), ApiError> {
    let access = require_patient(&st, &p, Action::AssistantUse, &patient_id).await?;
    let title = text_field("title", &req.title, MAX_TITLE_CHARS)?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let id = new_id();
    let c = conversations::create(&mut tx, &phi, &id, &patient_id, &p.user.id, &title, now).await?;
    append_in(
        &st,
        &mut tx,
        &p.event(now, "conversation.create", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "conversation_id": id }))
            .detail(&access_detail(access)),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((StatusCode::CREATED, axum::Json(c.into())))
}

/// Lists a patient's conversations, most recently active first.
#[utoipa::path(get, path = "/api/v1/patients/{id}/conversations", tag = "assistant",
    params(("id" = String, Path, description = "Patient id"), PageQuery),
    responses((status = 200, body = [ConversationOut]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = [])))]
pub async fn list_conversations(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(patient_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Vec<ConversationOut>>, ApiError> {
    let access = require_patient(&st, &p, Action::ConversationRead, &patient_id).await?;
    let (limit, offset) = page(&q)?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let found =
        match conversations::list_for_patient(&mut tx, &phi, &patient_id, limit, offset).await {
            Ok(found) => found,
            Err(e) => {
                drop(tx);
                return Err(phi_fault(&st, &p, e).await);
            }
        };
    append_in(
        &st,
        &mut tx,
        &p.event(now, "conversation.list", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "results": found.len() }))
            .detail(&access_detail(access)),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(
        found.into_iter().map(ConversationOut::from).collect(),
    ))
}

/// Who a conversation concerns and belongs to, or 404.
pub(crate) async fn header(
    st: &AppState,
    conversation_id: &str,
) -> Result<conversations::Header, ApiError> {
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    conversations::header(&mut conn, conversation_id)
        .await?
        .ok_or(ApiError::NotFound("conversation"))
}

/// Reads a conversation with its messages and the feedback on its answers.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "assistant",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = [])))]
pub async fn get_conversation(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConversationDetail>, ApiError> {
    let patient_id = header(&st, &id).await?.patient_id;
    let access = require_patient(&st, &p, Action::ConversationRead, &patient_id).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let read = async {
        let c = conversations::get(&mut tx, &phi, &id).await?;
        let msgs = conversations::messages(&mut tx, &phi, &id).await?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let fb = if m.kind == MessageKind::Answer {
                conversations::feedback_on(&mut tx, &phi, &m.id).await?
            } else {
                Vec::new()
            };
            out.push(MessageOut::new(m, fb));
        }
        Ok::<_, StoreError>((c, out))
    };
    let (c, messages) = match read.await {
        Ok((Some(c), m)) => (c, m),
        Ok((None, _)) => return Err(ApiError::NotFound("conversation")),
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    append_in(
        &st,
        &mut tx,
        &p.event(now, "conversation.read", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "conversation_id": id, "messages": messages.len() }))
            .detail(&access_detail(access)),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.phi_read(p.user.role.as_str(), 1);
    Ok(axum::Json(ConversationDetail {
        conversation: c.into(),
        messages,
    }))
}

/// Closes a conversation (only its clinician may); it then takes no new questions.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", tag = "assistant",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("session" = [])))]
pub async fn close_conversation(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConversationOut>, ApiError> {
    let h = header(&st, &id).await?;
    let patient_id = h.patient_id;
    require_patient(&st, &p, Action::AssistantUse, &patient_id).await?;
    require_owner(&st, &p, Action::AssistantUse, &patient_id, &h.clinician_id).await?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let c = match conversations::get(&mut tx, &phi, &id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(ApiError::NotFound("conversation")),
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    if c.status == Status::Closed || !conversations::close(&mut tx, &id, now).await? {
        return Err(ApiError::conflict(
            "conversation_closed",
            "the conversation is already closed",
        ));
    }
    append_in(
        &st,
        &mut tx,
        &p.event(now, "conversation.close", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "conversation_id": id })),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(axum::Json(ConversationOut::from(Conversation {
        status: Status::Closed,
        closed_at: Some(now),
        updated_at: now,
        ..c
    })))
}

/// Feedback on an answer. At least one of `helpful` and `verdict` is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIn {
    /// `helpful` or `not_helpful`.
    pub helpful: Option<String>,
    /// `correct`, `incorrect` or `unsafe` (unsafe is a safety override: audited and counted).
    pub verdict: Option<String>,
    /// Optional comment, at most 2,000 characters.
    pub comment: Option<String>,
}

/// Records the caller's feedback on an answer (replacing their earlier feedback on it).
#[utoipa::path(put, path = "/api/v1/messages/{id}/feedback", tag = "assistant",
    params(("id" = String, Path, description = "Answer message id")), request_body = FeedbackIn,
    responses((status = 200, body = FeedbackOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn put_feedback(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(message_id): ApiPath<String>,
    ApiJson(req): ApiJson<FeedbackIn>,
) -> Result<axum::Json<FeedbackOut>, ApiError> {
    let (_, patient_id) = {
        let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
        conversations::message_owner(&mut conn, &message_id)
            .await?
            .ok_or(ApiError::NotFound("message"))?
    };
    let access = require_patient(&st, &p, Action::AssistantUse, &patient_id).await?;
    let helpful = req
        .helpful
        .as_deref()
        .map(|h| {
            Helpful::parse(h).ok_or_else(|| {
                ApiError::invalid("invalid_field", "helpful must be helpful or not_helpful")
            })
        })
        .transpose()?;
    let verdict = req
        .verdict
        .as_deref()
        .map(|v| {
            Verdict::parse(v).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_field",
                    "verdict must be correct, incorrect or unsafe",
                )
            })
        })
        .transpose()?;
    if helpful.is_none() && verdict.is_none() {
        return Err(ApiError::invalid(
            "invalid_field",
            "give helpful, verdict or both",
        ));
    }
    let comment = req
        .comment
        .as_deref()
        .map(|c| text_field("comment", c, MAX_COMMENT_CHARS))
        .transpose()?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let m = match conversations::message(&mut tx, &phi, &message_id).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(ApiError::NotFound("message")),
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    if m.kind != MessageKind::Answer {
        return Err(ApiError::invalid(
            "not_an_answer",
            "feedback applies to the assistant's answers only",
        ));
    }
    let model = |key: &str| {
        m.provenance
            .as_ref()
            .and_then(|p| p.get("model"))
            .and_then(|v| v.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_owned()
    };
    let (model_id, model_version) = (model("id"), model("version"));
    let (fb, replaced) = conversations::set_feedback(
        &mut tx,
        &phi,
        &NewFeedback {
            message_id: &message_id,
            user_id: &p.user.id,
            helpful,
            verdict,
            comment: comment.as_deref(),
            model_id: &model_id,
            model_version: &model_version,
        },
        now,
    )
    .await?;
    let facts = serde_json::json!({
        "message_id": message_id,
        "helpful": helpful.map(Helpful::as_str),
        "verdict": verdict.map(Verdict::as_str),
        "replaced": replaced.is_some(),
        "model": { "id": model_id, "version": model_version },
    });
    append_in(
        &st,
        &mut tx,
        &p.event(now, "answer.feedback", Outcome::Success)
            .patient(&patient_id)
            .detail(&facts)
            .detail(&access_detail(access)),
    )
    .await?;
    let new_override = verdict == Some(Verdict::Unsafe) && replaced != Some(Some(Verdict::Unsafe));
    if new_override {
        append_in(
            &st,
            &mut tx,
            &p.event(now, "safety.override", Outcome::Success)
                .patient(&patient_id)
                .detail(&facts),
        )
        .await?;
    }
    let (correct, judged) = conversations::verdict_counts(
        &mut tx,
        &model_id,
        &model_version,
        now - ACCURACY_WINDOW_SECS,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    for judgement in [helpful.map(Helpful::as_str), verdict.map(Verdict::as_str)]
        .into_iter()
        .flatten()
    {
        st.metrics
            .feedback
            .get_or_create(&FeedbackLabels {
                model: model_id.clone(),
                version: model_version.clone(),
                judgement: judgement.to_owned(),
            })
            .inc();
    }
    let labels = ModelLabels {
        model: model_id,
        version: model_version,
    };
    if new_override {
        st.metrics.safety_overrides.get_or_create(&labels).inc();
    }
    if judged > 0 {
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let ratio = correct as f64 / judged as f64;
        st.metrics.model_accuracy.get_or_create(&labels).set(ratio);
    }
    Ok(axum::Json(fb.into()))
}

/// A clinical note as returned by the API.
#[derive(Serialize, ToSchema)]
pub struct NoteOut {
    /// Opaque id.
    pub id: String,
    /// The patient.
    pub patient_id: String,
    /// Who wrote it.
    pub author_id: String,
    /// The note.
    pub text: String,
    /// RFC 3339.
    pub created_at: String,
}

impl From<Note> for NoteOut {
    fn from(n: Note) -> Self {
        Self {
            id: n.id,
            patient_id: n.patient_id,
            author_id: n.author_id,
            text: n.body,
            created_at: rfc3339(n.created_at),
        }
    }
}

/// A note to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteIn {
    /// The note, 1 to 20,000 characters.
    pub text: String,
}

/// Adds a clinical note to a patient's record.
#[utoipa::path(post, path = "/api/v1/patients/{id}/notes", tag = "assistant",
    params(("id" = String, Path, description = "Patient id")), request_body = NoteIn,
    responses((status = 201, body = NoteOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_note(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(patient_id): ApiPath<String>,
    ApiJson(req): ApiJson<NoteIn>,
) -> Result<(StatusCode, axum::Json<NoteOut>), ApiError> {
    let access = require_patient(&st, &p, Action::NoteWrite, &patient_id).await?;
    let text = text_field("text", &req.text, MAX_NOTE_CHARS)?;
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let id = new_id();
    let note =
        conversations::add_note(&mut tx, &phi, &id, &patient_id, &p.user.id, &text, now).await?;
    append_in(
        &st,
        &mut tx,
        &p.event(now, "note.create", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "note_id": id }))
            .detail(&access_detail(access)),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((StatusCode::CREATED, axum::Json(note.into())))
}

/// Note listing parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NoteQuery {
    /// How many of the newest notes, 1 to 100 (default 50).
    pub limit: Option<i64>,
}

/// A patient's newest clinical notes.
#[utoipa::path(get, path = "/api/v1/patients/{id}/notes", tag = "assistant",
    params(("id" = String, Path, description = "Patient id"), NoteQuery),
    responses((status = 200, body = [NoteOut]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = [])))]
pub async fn list_notes(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(patient_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<NoteQuery>,
) -> Result<axum::Json<Vec<NoteOut>>, ApiError> {
    let access = require_patient(&st, &p, Action::PatientRead, &patient_id).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 100",
        ));
    }
    let now = st.now();
    let mut tx = st.store.begin().await?;
    let phi = cipher!(st, p, tx, now);
    let found = match conversations::notes(&mut tx, &phi, &patient_id, limit).await {
        Ok(found) => found,
        Err(e) => {
            drop(tx);
            return Err(phi_fault(&st, &p, e).await);
        }
    };
    append_in(
        &st,
        &mut tx,
        &p.event(now, "note.read", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({ "results": found.len() }))
            .detail(&access_detail(access)),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    st.metrics.phi_read(p.user.role.as_str(), 1);
    Ok(axum::Json(found.into_iter().map(NoteOut::from).collect()))
}
