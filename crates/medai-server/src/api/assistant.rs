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

/// Unwraps a PHI read in a request's transaction. A field that cannot be decrypted, or a key the
/// provider cannot unwrap, ends the request through [`phi_fault`]: the transaction is dropped
/// first, so the fault's audit event commits on its own.
macro_rules! phi_read {
    ($st:ident, $p:ident, $tx:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                drop($tx);
                return Err(phi_fault(&$st, &$p, e).await);
            }
        }
    };
}

/// The current PHI cipher for a request's transaction (see [`phi_read`]).
macro_rules! cipher {
    ($st:ident, $p:ident, $tx:ident, $now:ident) => {
        phi_read!(
            $st,
            $p,
            $tx,
            $st.phi.current(&mut $tx, &*$st.kek, $now).await
        )
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
    let found = phi_read!(
        st,
        p,
        tx,
        conversations::list_for_patient(&mut tx, &phi, &patient_id, limit, offset).await
    );
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
        let mut feedback = conversations::feedback_in(&mut tx, &phi, &id).await?;
        let out: Vec<MessageOut> = msgs
            .into_iter()
            .map(|m| {
                let (mine, rest) = feedback.drain(..).partition(|f| f.message_id == m.id);
                feedback = rest;
                MessageOut::new(m, mine)
            })
            .collect();
        Ok::<_, StoreError>((c, out))
    };
    let (c, messages) = phi_read!(st, p, tx, read.await);
    let c = c.ok_or(ApiError::NotFound("conversation"))?;
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
    let c = phi_read!(st, p, tx, conversations::get(&mut tx, &phi, &id).await)
        .ok_or(ApiError::NotFound("conversation"))?;
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

/// The model id and version an answer's provenance names (`unknown` where absent).
pub(crate) fn model_of(provenance: Option<&serde_json::Value>) -> (String, String) {
    let get = |key: &str| {
        provenance
            .and_then(|p| p.get("model"))
            .and_then(|v| v.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_owned()
    };
    (get("id"), get("version"))
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
    let m = phi_read!(
        st,
        p,
        tx,
        conversations::message(&mut tx, &phi, &message_id).await
    )
    .ok_or(ApiError::NotFound("message"))?;
    if m.kind != MessageKind::Answer {
        return Err(ApiError::invalid(
            "not_an_answer",
            "feedback applies to the assistant's answers only",
        ));
    }
    let (model_id, model_version) = model_of(m.provenance.as_ref());
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
    let found = phi_read!(
        st,
        p,
        tx,
        conversations::notes(&mut tx, &phi, &patient_id, limit).await
    );
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

/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 4_000;
/// How many of the newest clinical notes go into the model's context.
const CONTEXT_NOTES: i64 = 5;
/// How many earlier messages of the conversation go to the model.
const HISTORY_MESSAGES: i64 = 10;

/// A question to the assistant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionIn {
    /// The question, 1 to 4,000 characters.
    pub text: String,
}

/// The model error as the client sees it: status, the model layer's error kind as the code, a
/// message without internal detail, and `Retry-After` when the layer knows it.
fn model_error(e: &medai_llm::LlmError) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let message = match status {
        StatusCode::TOO_MANY_REQUESTS => "the model is busy; retry after the indicated time",
        StatusCode::SERVICE_UNAVAILABLE => "the model is unavailable; retry later",
        StatusCode::GATEWAY_TIMEOUT => "the model did not answer in time",
        StatusCode::BAD_REQUEST => {
            return ApiError::Internal(format!("the model refused the request: {e}"));
        }
        _ => "the model failed to answer",
    };
    ApiError::Model {
        status,
        code: e.kind().as_str(),
        message: message.to_owned(),
        retry_after: e.retry_after_secs(),
    }
}

/// Byte ranges where `value` occurs in `text` as a whole word, ignoring ASCII case.
fn word_occurrences(text: &str, value: &str) -> Vec<(usize, usize)> {
    let value = value.trim();
    if value.is_empty() || value.len() > text.len() {
        return Vec::new();
    }
    let (hay, needle) = (text.to_ascii_lowercase(), value.to_ascii_lowercase());
    hay.match_indices(&needle)
        .filter(|(i, m)| {
            let before = hay[..*i].chars().next_back();
            let after = hay[i + m.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
        .map(|(i, m)| (i, i + m.len()))
        .collect()
}

/// Whether `text` contains `value` as a whole word, ignoring ASCII case.
fn contains_word(text: &str, value: &str) -> bool {
    !word_occurrences(text, value).is_empty()
}

/// Bytes of re-identified text held back while an answer streams, so that the output check
/// sees identifiers whole: the ones with spaces inside ("(617) 555-0142", "MRN: 4417 2231", a
/// labelled plan number) are shorter; those without spaces (e-mail, URL, SSN, VIN) are never cut,
/// as cuts fall only after whitespace.
const CHECK_WINDOW: usize = 48;

/// Bytes kept with an identifier-shaped span ahead of it: the label that makes a bare number an
/// identifier ("MRN:", "medical record number") must reach the check with the number.
const LABEL_WINDOW: usize = 32;

/// The least text worth a cut (and a run of the detector) while streaming.
const MIN_SEGMENT: usize = 32;

/// Byte ranges of the spans of `text` the output check masks.
fn checked_spans(detector: &medai_phi::Detector, text: &str) -> Vec<(usize, usize)> {
    detector
        .detect(text)
        .into_iter()
        .filter(|sp| medai_safety::CHECKED_TYPES.contains(&sp.phi_type))
        .map(|sp| (sp.start, sp.end))
        .collect()
}

/// The last cut after whitespace at or before byte `limit`.
fn whitespace_cut(text: &str, limit: usize) -> Option<usize> {
    text.char_indices()
        .take_while(|(i, _)| *i < limit)
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, c)| i + c.len_utf8())
        .filter(|cut| *cut <= limit)
        .last()
}

/// Where the pending re-identified text may be cut for the output check: after the last
/// whitespace that has at least `CHECK_WINDOW` bytes after it, moved back so that no
/// identifier-shaped span (`spans` of the whole pending text) is split or parted from the
/// `LABEL_WINDOW` bytes before it. `None` while fewer than `MIN_SEGMENT` bytes can go.
fn stream_cut(pending: &str, spans: impl FnOnce(&str) -> Vec<(usize, usize)>) -> Option<usize> {
    let limit = pending.len().checked_sub(CHECK_WINDOW)?;
    let mut cut = whitespace_cut(pending, limit)?;
    if cut < MIN_SEGMENT {
        return None;
    }
    let spans = spans(pending);
    // Moving the cut back may bring it near an earlier span; repeat.
    while let Some(&(start, _)) = spans
        .iter()
        .find(|(a, b)| a.saturating_sub(LABEL_WINDOW) < cut && cut < *b)
    {
        cut = whitespace_cut(pending, start.saturating_sub(LABEL_WINDOW)).unwrap_or(0);
    }
    (cut >= MIN_SEGMENT).then_some(cut)
}

fn sse_event(name: &str, data: &serde_json::Value) -> axum::response::sse::Event {
    axum::response::sse::Event::default()
        .event(name)
        .data(data.to_string())
}

/// What the streaming task needs to finish an answer.
struct AnswerJob {
    st: AppState,
    p: Principal,
    conversation_id: String,
    patient_id: String,
    question_id: String,
    known: Vec<String>,
    deidentified: serde_json::Value,
    escalations: Vec<String>,
}

/// Asks the assistant about the conversation's patient. The answer streams as server-sent
/// events: `escalation` (when a safety rule fired, before anything else), `delta` (re-identified
/// text, checked for identifiers the record did not contain), then `done` (the stored answer's
/// id and provenance) or `error`. Only de-identified text reaches the model.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "assistant",
    params(("id" = String, Path, description = "Conversation id")), request_body = QuestionIn,
    responses((status = 200, description = "Server-sent events: escalation, delta…, then done or error", content_type = "text/event-stream"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("session" = [])))]
pub async fn ask(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<QuestionIn>,
) -> Result<axum::response::Response, ApiError> {
    use medai_llm::{ChatRequest, Message as ChatMessage, Role as ChatRole};
    let h = header(&st, &id).await?;
    let patient_id = h.patient_id;
    let access = require_patient(&st, &p, Action::AssistantUse, &patient_id).await?;
    require_owner(&st, &p, Action::AssistantUse, &patient_id, &h.clinician_id).await?;
    if h.status == Status::Closed {
        return Err(ApiError::conflict(
            "conversation_closed",
            "the conversation is closed; start a new one",
        ));
    }
    let question = text_field("text", &req.text, MAX_QUESTION_CHARS)?;
    let Some(registry) = st.assistant.registry.clone() else {
        return Err(ApiError::Model {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "no_model",
            message: "no model is configured; an administrator sets [llm] in medai.toml".into(),
            retry_after: None,
        });
    };
    let now = st.now();
    // The reads take a connection only while they run: de-identification and triage below hold
    // none (on SQLite the store has one connection, and every other request waits for it).
    let mut conn = st.store.pool().acquire().await.map_err(StoreError::from)?;
    let phi = cipher!(st, p, conn, now);
    let loaded = async {
        let patient = medai_store::patients::get(&mut conn, &phi, &patient_id).await?;
        let notes = conversations::notes(&mut conn, &phi, &patient_id, CONTEXT_NOTES).await?;
        let history =
            conversations::recent_messages(&mut conn, &phi, &id, HISTORY_MESSAGES).await?;
        Ok::<_, StoreError>((patient, notes, history))
    };
    let (patient, notes, history) = phi_read!(st, p, conn, loaded.await);
    drop(conn);
    let patient = patient.ok_or(ApiError::NotFound("patient"))?;

    // The patient context, then de-identification of everything model-bound.
    let d = &patient.demographics;
    let dob = medai_store::patients::format_date(d.date_of_birth);
    let mut context = format!(
        "Patient name: {} {}\nMRN: {}\nDate of birth: {}\nSex: {}\n",
        d.given_name,
        d.family_name,
        d.mrn,
        dob,
        d.sex.as_str()
    );
    if !notes.is_empty() {
        context.push_str("Clinical notes, newest first:\n");
        for n in &notes {
            context.push_str("- ");
            context.push_str(&n.body);
            context.push('\n');
        }
    }
    let detector = &st.assistant.detector;
    let mut vault = medai_phi::Vault::new();
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut known: Vec<String> = vec![
        d.given_name.clone(),
        d.family_name.clone(),
        d.mrn.clone(),
        dob.clone(),
    ];
    // The record's own identifiers are replaced wherever they occur as words, whether or not
    // the detector recognises them (a given name such as "Will" or "Test" is also a word).
    let own: Vec<(String, medai_phi::PhiType)> = vec![
        (d.given_name.clone(), medai_phi::PhiType::Name),
        (d.family_name.clone(), medai_phi::PhiType::Name),
        (d.mrn.clone(), medai_phi::PhiType::MedicalRecordNumber),
        (dob.clone(), medai_phi::PhiType::Date),
    ];
    let mut deid = |text: &str, counts: &mut std::collections::BTreeMap<&'static str, u64>| {
        let mut spans = detector.detect(text);
        for s in &spans {
            if let Some(v) = text.get(s.start..s.end) {
                known.push(v.to_owned());
            }
        }
        for (value, phi_type) in &own {
            for (start, end) in word_occurrences(text, value) {
                if !spans.iter().any(|s| s.start < end && start < s.end) {
                    spans.push(medai_phi::Span {
                        start,
                        end,
                        phi_type: *phi_type,
                        confidence: 1.0,
                    });
                }
            }
        }
        spans.sort_by_key(|s| s.start);
        let out = vault.deidentify_spans(text, &spans);
        for s in &out.spans {
            *counts.entry(s.phi_type.as_str()).or_default() += 1;
        }
        out.text.clone()
    };
    let context_out = deid(&context, &mut counts);
    let history_out: Vec<(MessageKind, String)> = history
        .iter()
        .map(|m| (m.kind, deid(&m.body, &mut counts)))
        .collect();
    let question_out = deid(&question, &mut counts);
    // Fail-safe: the record's own identifiers must not survive de-identification.
    let direct = [&d.given_name, &d.family_name, &d.mrn, &dob];
    let outgoing = std::iter::once(&context_out)
        .chain(history_out.iter().map(|(_, t)| t))
        .chain(std::iter::once(&question_out));
    for text in outgoing {
        if direct.iter().any(|v| contains_word(text, v)) {
            let e = p
                .event(now, "phi.guard_blocked", Outcome::Failure)
                .patient(&patient_id)
                .detail(&serde_json::json!({ "conversation_id": id }));
            if let Err(err) = st.audit.append(&e).await {
                st.metrics.audit_append_failures.inc();
                tracing::error!(target: "security", error = %err, "audit append failed");
            }
            return Err(ApiError::Internal(
                "a record identifier survived de-identification; the model was not called".into(),
            ));
        }
    }

    // Safety triage of the question and the notes.
    let mut escalations: Vec<medai_safety::Hit> = Vec::new();
    for text in std::iter::once(question.as_str()).chain(notes.iter().map(|n| n.body.as_str())) {
        for hit in st.assistant.rules.triage(text).hits {
            if !escalations.iter().any(|e| e.rule_id == hit.rule_id) {
                escalations.push(hit);
            }
        }
    }
    let rule_ids: Vec<String> = escalations.iter().map(|h| h.rule_id.clone()).collect();
    let deidentified = serde_json::json!(counts);

    // The question is stored and audited in one transaction, committed before any of the
    // answer is sent.
    let question_id = new_id();
    let mut tx = st.store.begin().await?;
    conversations::append_message(
        &mut tx,
        &phi,
        &conversations::NewMessage {
            id: &question_id,
            conversation_id: &id,
            kind: MessageKind::Question,
            author_id: Some(&p.user.id),
            body: &question,
            provenance: None,
            escalations: &rule_ids,
        },
        now,
    )
    .await?;
    append_in(
        &st,
        &mut tx,
        &p.event(now, "assistant.question", Outcome::Success)
            .patient(&patient_id)
            .detail(&serde_json::json!({
                "conversation_id": id,
                "message_id": question_id,
                "escalations": rule_ids,
                "deidentified": deidentified,
            }))
            .detail(&access_detail(access)),
    )
    .await?;
    if !rule_ids.is_empty() {
        append_in(
            &st,
            &mut tx,
            &p.event(now, "safety.escalation", Outcome::Success)
                .patient(&patient_id)
                .detail(&serde_json::json!({
                    "conversation_id": id,
                    "message_id": question_id,
                    "rules": rule_ids,
                    "rule_set": st.assistant.rules.version(),
                })),
        )
        .await?;
    }
    let mut system = crate::assistant::system_prompt_prefix();
    system.push_str(&context_out);
    let mut messages = vec![ChatMessage::new(ChatRole::System, system)];
    for (kind, text) in history_out {
        let role = match kind {
            MessageKind::Question => ChatRole::User,
            MessageKind::Answer => ChatRole::Assistant,
        };
        messages.push(ChatMessage::new(role, text));
    }
    messages.push(ChatMessage::new(ChatRole::User, question_out));
    let request = ChatRequest {
        messages,
        ..ChatRequest::default()
    };
    // The commit (question and its audit events) runs while the model call starts: only
    // de-identified text goes out, and no answer reaches the clinician before both are done. If
    // the commit fails the model call is dropped, which cancels it.
    let (committed, called) = tokio::join!(tx.commit(), registry.chat_stream(None, request));
    committed.map_err(StoreError::from)?;
    for r in &rule_ids {
        st.metrics
            .safety_escalations
            .get_or_create(&crate::metrics::RuleLabels { rule: r.clone() })
            .inc();
    }

    let stream = match called {
        Ok(s) => s,
        Err(e) => {
            let event = p
                .event(st.now(), "assistant.answer", Outcome::Failure)
                .patient(&patient_id)
                .detail(&serde_json::json!({
                    "conversation_id": id,
                    "question_id": question_id,
                    "error": e.kind().as_str(),
                }));
            if let Err(err) = st.audit.append(&event).await {
                st.metrics.audit_append_failures.inc();
                tracing::error!(target: "security", error = %err, "audit append failed");
            }
            return Err(model_error(&e));
        }
    };

    let (events, rx) = tokio::sync::mpsc::channel::<axum::response::sse::Event>(64);
    if !escalations.is_empty() {
        let notices: Vec<serde_json::Value> = escalations
            .iter()
            .map(|h| serde_json::json!({ "rule": h.rule_id, "title": h.title, "notice": h.notice }))
            .collect();
        // The channel is fresh and larger than one event: this cannot fail.
        let _ = events.try_send(sse_event(
            "escalation",
            &serde_json::json!({ "rules": notices }),
        ));
    }
    let job = AnswerJob {
        st: st.clone(),
        p,
        conversation_id: id,
        patient_id,
        question_id,
        known,
        deidentified,
        escalations: rule_ids,
    };
    // The answer streams on after the handler returns: it stays in the request's span, so its
    // log lines keep the trace id and the exported span covers the whole answer.
    tokio::spawn(tracing::Instrument::instrument(
        stream_answer(job, stream, vault, events),
        tracing::Span::current(),
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Ok(axum::response::IntoResponse::into_response(
        axum::response::sse::Sse::new(body).keep_alive(axum::response::sse::KeepAlive::default()),
    ))
}

/// Streams one answer: re-identifies each delta, checks segments (see `stream_cut`) for identifiers the
/// record did not contain, sends them, and stores the answer with its provenance when the model
/// finishes. If the client goes away the stream is dropped, which cancels the upstream call, and
/// nothing is stored but the audit event.
async fn stream_answer(
    job: AnswerJob,
    mut stream: medai_llm::AnswerStream,
    vault: medai_phi::Vault,
    events: tokio::sync::mpsc::Sender<axum::response::sse::Event>,
) {
    use futures_util::StreamExt as _;
    let st = &job.st;
    let detector = std::sync::Arc::clone(&st.assistant.detector);
    let known: Vec<&str> = job.known.iter().map(String::as_str).collect();
    let mut reid = medai_llm::StreamingReidentifier::new(vault);
    let (mut pending, mut answer, mut masked) = (String::new(), String::new(), 0usize);
    let check = |seg: &str, answer: &mut String, masked: &mut usize| -> String {
        let m = medai_safety::mask_with(&detector, &medai_safety::CHECKED_TYPES, seg, &known);
        *masked += m.masked;
        answer.push_str(&m.text);
        m.text
    };
    let mut completion = None;
    let mut failure: Option<&'static str> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(medai_llm::StreamEvent::Delta(t)) => {
                pending.push_str(&reid.push(&t));
                if let Some(cut) = stream_cut(&pending, |text| checked_spans(&detector, text)) {
                    let seg: String = pending.drain(..cut).collect();
                    let text = check(&seg, &mut answer, &mut masked);
                    if events
                        .send(sse_event("delta", &serde_json::json!({ "text": text })))
                        .await
                        .is_err()
                    {
                        failure = Some("client_disconnected");
                        break;
                    }
                }
            }
            Ok(medai_llm::StreamEvent::Done(c)) => completion = Some(*c),
            Err(e) => {
                failure = Some(e.kind().as_str());
                break;
            }
        }
    }
    drop(stream);
    let model_id = completion
        .as_ref()
        .map_or_else(String::new, |c| c.model_id.clone());
    if failure.is_none() {
        pending.push_str(&reid.finish());
        if !pending.is_empty() {
            let text = check(&pending, &mut answer, &mut masked);
            if events
                .send(sse_event("delta", &serde_json::json!({ "text": text })))
                .await
                .is_err()
            {
                failure = Some("client_disconnected");
            }
        }
    }
    let c = match (failure, completion) {
        (None, Some(c)) => c,
        (f, _) => {
            let kind = f.unwrap_or("protocol");
            let e = job
                .p
                .event(st.now(), "assistant.answer", Outcome::Failure)
                .patient(&job.patient_id)
                .detail(&serde_json::json!({
                    "conversation_id": job.conversation_id,
                    "question_id": job.question_id,
                    "error": kind,
                }));
            if let Err(err) = st.audit.append(&e).await {
                st.metrics.audit_append_failures.inc();
                tracing::error!(target: "security", error = %err, "audit append failed");
            }
            let _ = events
                .send(sse_event(
                    "error",
                    &serde_json::json!({ "code": kind, "message": "the answer was interrupted; nothing was stored" }),
                ))
                .await;
            return;
        }
    };
    let provenance = serde_json::json!({
        "provider": c.provider,
        "model": {
            "id": c.model_id,
            "version": c.upstream_model.clone().unwrap_or_else(|| "unreported".into()),
            "failover": c.failover,
        },
        "params": c.params,
        "prompt_template_version": crate::assistant::PROMPT_TEMPLATE_VERSION,
        "triage_rule_set": st.assistant.rules.version(),
        "deidentified": job.deidentified,
        "latency_ms": {
            "first_token": u64::try_from(c.timing.first_token.as_millis()).unwrap_or(u64::MAX),
            "total": u64::try_from(c.timing.total.as_millis()).unwrap_or(u64::MAX),
        },
        "tokens": c.usage.map(|u| serde_json::json!({
            "prompt": u.prompt_tokens, "completion": u.completion_tokens
        })),
        "finish_reason": c.finish_reason,
        "attempts": c.attempts,
        "escalations": job.escalations,
        "phi_masked": masked,
    });
    if let (Some(id), Some(version)) = (
        provenance["model"]["id"].as_str(),
        provenance["model"]["version"].as_str(),
    ) {
        st.metrics.model_version_seen(id, version);
    }
    let answer_id = new_id();
    let stored = async {
        let now = st.now();
        let mut tx = st.store.begin().await?;
        let phi = st
            .phi
            .current(&mut tx, &*st.kek, now)
            .await
            .map_err(ApiError::from)?;
        conversations::append_message(
            &mut tx,
            &phi,
            &conversations::NewMessage {
                id: &answer_id,
                conversation_id: &job.conversation_id,
                kind: MessageKind::Answer,
                author_id: None,
                body: &answer,
                provenance: Some(&provenance),
                escalations: &job.escalations,
            },
            now,
        )
        .await?;
        append_in(
            st,
            &mut tx,
            &job.p
                .event(now, "assistant.answer", Outcome::Success)
                .patient(&job.patient_id)
                .detail(&serde_json::json!({
                    "conversation_id": job.conversation_id,
                    "message_id": answer_id,
                    "question_id": job.question_id,
                    "model": provenance["model"],
                    "phi_masked": masked,
                })),
        )
        .await?;
        if masked > 0 {
            append_in(
                st,
                &mut tx,
                &job.p
                    .event(now, "phi.leak_suspected", Outcome::Success)
                    .patient(&job.patient_id)
                    .detail(&serde_json::json!({
                        "message_id": answer_id,
                        "masked": masked,
                        "model": provenance["model"],
                    })),
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok::<_, ApiError>(())
    };
    if masked > 0 {
        st.metrics
            .llm
            .phi_leak_suspected
            .get_or_create(&crate::metrics::LlmLabels { model: model_id })
            .inc_by(masked as u64);
    }
    match stored.await {
        Ok(()) => {
            let _ = events
                .send(sse_event(
                    "done",
                    &serde_json::json!({ "message_id": answer_id, "provenance": provenance }),
                ))
                .await;
        }
        Err(e) => {
            if let ApiError::Encrypt { reason, detail } = &e {
                st.metrics.phi_encrypt_failure(reason);
                tracing::error!(detail = %detail, "encrypting an answer failed");
            }
            tracing::error!(code = e.code(), error = %e, "storing an answer failed");
            let _ = events
                .send(sse_event(
                    "error",
                    &serde_json::json!({ "code": "internal", "message": "the answer could not be stored" }),
                ))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_spans(_: &str) -> Vec<(usize, usize)> {
        Vec::new()
    }

    #[test]
    fn the_stream_is_cut_after_whitespace_with_the_window_held_back() {
        let short = "Consider acute coronary syndrome.";
        assert_eq!(stream_cut(short, no_spans), None, "shorter than the window");
        let text = "Consider acute coronary syndrome, pulmonary embolism and aortic dissection; \
                    obtain a troponin and an ECG now";
        let cut = stream_cut(text, no_spans).unwrap();
        assert!(text[..cut].ends_with(' '));
        assert!(text.len() - cut >= CHECK_WINDOW);
        // the last whitespace that leaves the window: none later qualifies
        assert!(!text[cut..text.len() - CHECK_WINDOW].contains(' '));
        // Multi-byte text near the limit cuts on a character boundary.
        let text = format!("{} {}", "é".repeat(20), "ü".repeat(40));
        let cut = stream_cut(&text, no_spans).unwrap();
        assert!(text.is_char_boundary(cut));
    }

    #[test]
    fn a_cut_never_splits_an_identifier_shaped_span() {
        let text = "Her troponin was normal this morning. Call her back on (617) 555-0142 today, \
                    then review the ECG and troponin";
        let start = text.find('(').unwrap();
        let end = text.find(" today").unwrap();
        // Without spans the cut would fall inside the number.
        let plain = stream_cut(text, no_spans).unwrap();
        assert!(plain > start && plain < end, "{plain}");
        // With it, the cut moves back before the number and the label window ahead of it: here
        // that leaves too little to send yet.
        assert_eq!(stream_cut(text, |_| vec![(start, end)]), None);
        let long = format!(
            "{}{text}",
            "The differential is broad and includes the following. ".repeat(2)
        );
        let shift = long.len() - text.len();
        let (start, end) = (start + shift, end + shift);
        let cut = stream_cut(&long, |_| vec![(start, end)]).unwrap();
        assert!(
            cut + LABEL_WINDOW <= start && long[..cut].ends_with(' '),
            "{cut}"
        );
        assert!(whitespace_cut(&long, start - LABEL_WINDOW) == Some(cut));
        // An earlier span the moved cut would then split moves it again.
        let earlier = (cut - 4, cut + 2);
        let again = stream_cut(&long, |_| vec![earlier, (start, end)]).unwrap();
        assert!(again + LABEL_WINDOW <= earlier.0, "{again}");
    }

    /// Streams `answer` in pieces of `n` bytes through the cut and the output check, as the
    /// answer path does, and returns what the client would see.
    fn streamed(answer: &str, n: usize, detector: &medai_phi::Detector, known: &[&str]) -> String {
        let check = |seg: &str| {
            medai_safety::mask_with(detector, &medai_safety::CHECKED_TYPES, seg, known).text
        };
        let (mut pending, mut out) = (String::new(), String::new());
        let mut rest = answer;
        while !rest.is_empty() {
            let mut k = n.min(rest.len());
            while !rest.is_char_boundary(k) {
                k += 1;
            }
            pending.push_str(&rest[..k]);
            rest = &rest[k..];
            if let Some(cut) = stream_cut(&pending, |text| checked_spans(detector, text)) {
                let seg: String = pending.drain(..cut).collect();
                out.push_str(&check(&seg));
            }
        }
        out.push_str(&check(&pending));
        out
    }

    #[test]
    fn streamed_identifiers_are_masked_whatever_the_chunking() {
        let detector = medai_phi::Detector::new();
        let answer = "Her SSN is 123-45-6789 and her phone (617) 555-0142; the MRN: 4417 2231 \
                      is on the wristband. Email j.doe@example.org or see \
                      https://portal.example.org/p/8812 for results. Known MRN-40001 stays.";
        let known = ["MRN-40001"];
        let whole =
            medai_safety::mask_with(&detector, &medai_safety::CHECKED_TYPES, answer, &known);
        assert!(whole.masked >= 4, "{}", whole.text);
        for n in [1, 2, 3, 5, 7, 11, 16, 40] {
            let got = streamed(answer, n, &detector, &known);
            for raw in ["6789", "0142", "2231", "j.doe@", "8812"] {
                assert!(!got.contains(raw), "pieces of {n}: {raw} leaked in {got}");
            }
            assert!(got.contains("MRN-40001"), "pieces of {n}: {got}");
            assert!(got.ends_with("stays."), "pieces of {n}: {got}");
            assert_eq!(
                got, whole.text,
                "pieces of {n}: the same as checking it whole"
            );
        }
    }
}
