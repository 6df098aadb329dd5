//! The assistant's records: conversations about a patient, their messages (questions and
//! answers), clinician feedback on answers, and the clinical notes that give the assistant its
//! patient context.
//!
//! Every free-text column is sealed with the PHI cipher (bound to table, column, row id and key
//! version, so a ciphertext copied to another row does not open). Provenance and triage rule ids
//! are stored in plaintext JSON: they name models, parameters and counts, never patient data.
//! A row that fails to open fails the whole read: nothing is returned in place of the data.

use crate::phi_keys::PhiCipher;
use crate::StoreError;
use sqlx::{AnyConnection, FromRow};

/// Whether a conversation takes new questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// New questions may be asked.
    Open,
    /// Read-only.
    Closed,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Status::Open),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }
}

/// A conversation about one patient, started by one clinician.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Opaque id.
    pub id: String,
    /// The patient it is about.
    pub patient_id: String,
    /// The user who started it (only they may continue or close it).
    pub clinician_id: String,
    /// Title (PHI: may name the patient's condition).
    pub title: String,
    /// Open or closed.
    pub status: Status,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last message or change.
    pub updated_at: i64,
    /// Unix seconds, when closed.
    pub closed_at: Option<i64>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The clinician's question.
    Question,
    /// The assistant's answer.
    Answer,
}

impl MessageKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Question => "question",
            MessageKind::Answer => "answer",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "question" => Some(MessageKind::Question),
            "answer" => Some(MessageKind::Answer),
            _ => None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Opaque id.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// Question or answer.
    pub kind: MessageKind,
    /// The asking user (questions only).
    pub author_id: Option<String>,
    /// The text, re-identified (PHI).
    pub body: String,
    /// How an answer was produced (answers only): provider, model, version, parameters, prompt
    /// template version, de-identification counts, latency and tokens. Never PHI.
    pub provenance: Option<serde_json::Value>,
    /// Ids of the safety rules that fired on the question and context.
    pub escalations: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// Id of the new message.
    pub id: &'a str,
    /// The conversation.
    pub conversation_id: &'a str,
    /// Question or answer.
    pub kind: MessageKind,
    /// The asking user (questions).
    pub author_id: Option<&'a str>,
    /// The text (PHI; sealed before it is written).
    pub body: &'a str,
    /// Provenance of an answer.
    pub provenance: Option<&'a serde_json::Value>,
    /// Safety rule ids that fired.
    pub escalations: &'a [String],
}

/// "Was the answer helpful?"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helpful {
    /// Helpful.
    Helpful,
    /// Not helpful.
    NotHelpful,
}

impl Helpful {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Helpful::Helpful => "helpful",
            Helpful::NotHelpful => "not_helpful",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "helpful" => Some(Helpful::Helpful),
            "not_helpful" => Some(Helpful::NotHelpful),
            _ => None,
        }
    }
}

/// The clinician's judgement of an answer's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Clinically correct.
    Correct,
    /// Wrong.
    Incorrect,
    /// Unsafe: a safety override.
    Unsafe,
}

impl Verdict {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Incorrect => "incorrect",
            Verdict::Unsafe => "unsafe",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "correct" => Some(Verdict::Correct),
            "incorrect" => Some(Verdict::Incorrect),
            "unsafe" => Some(Verdict::Unsafe),
            _ => None,
        }
    }
}

/// One user's feedback on one answer (a later submission replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The answer.
    pub message_id: String,
    /// The user who judged it.
    pub user_id: String,
    /// Helpful or not, if said.
    pub helpful: Option<Helpful>,
    /// Correct, incorrect or unsafe, if said.
    pub verdict: Option<Verdict>,
    /// Free-text comment (PHI).
    pub comment: Option<String>,
    /// The model that produced the answer (copied from its provenance, for per-model figures).
    pub model_id: String,
    /// Its version or weights digest.
    pub model_version: String,
    /// Unix seconds of the first submission.
    pub created_at: i64,
    /// Unix seconds of the latest submission.
    pub updated_at: i64,
}

/// A clinical note on a patient (the assistant's patient context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Opaque id.
    pub id: String,
    /// The patient.
    pub patient_id: String,
    /// Who wrote it.
    pub author_id: String,
    /// The note (PHI).
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

fn current_version(phi: &PhiCipher, table: &'static str) -> Result<i64, StoreError> {
    phi.write_version(table).map(i64::from)
}

#[derive(FromRow)]
struct ConversationRow {
    id: String,
    patient_id: String,
    clinician_id: String,
    title_enc: Vec<u8>,
    status: String,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
}

const CONVERSATION_COLUMNS: &str =
    "id, patient_id, clinician_id, title_enc, status, created_at, updated_at, closed_at";

impl ConversationRow {
    fn open(self, phi: &PhiCipher) -> Result<Conversation, StoreError> {
        let title = phi
            .open("conversations", "title", &self.id, &self.title_enc)?
            .as_str()
            .to_owned();
        let status = Status::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!("conversation {} has an invalid status", self.id))
        })?;
        Ok(Conversation {
            id: self.id,
            patient_id: self.patient_id,
            clinician_id: self.clinician_id,
            title,
            status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            closed_at: self.closed_at,
        })
    }
}

/// Starts an open conversation.
pub async fn create(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
    patient_id: &str,
    clinician_id: &str,
    title: &str,
    now: i64,
) -> Result<Conversation, StoreError> {
    let version = current_version(phi, "conversations")?;
    let title_enc = phi.seal("conversations", "title", id, title)?;
    sqlx::query(
        "INSERT INTO conversations (id, patient_id, clinician_id, title_enc, key_version, status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6)",
    )
    .bind(id)
    .bind(patient_id)
    .bind(clinician_id)
    .bind(title_enc)
    .bind(version)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Conversation {
        id: id.to_owned(),
        patient_id: patient_id.to_owned(),
        clinician_id: clinician_id.to_owned(),
        title: title.to_owned(),
        status: Status::Open,
        created_at: now,
        updated_at: now,
        closed_at: None,
    })
}

/// One conversation.
pub async fn get(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
) -> Result<Option<Conversation>, StoreError> {
    let row: Option<ConversationRow> = sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.open(phi)).transpose()
}

/// Who a conversation concerns and belongs to, read without decrypting anything (for
/// authorisation before any PHI is touched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The patient it is about.
    pub patient_id: String,
    /// The user who started it.
    pub clinician_id: String,
    /// Open or closed.
    pub status: Status,
}

/// The [`Header`] of a conversation.
pub async fn header(conn: &mut AnyConnection, id: &str) -> Result<Option<Header>, StoreError> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT patient_id, clinician_id, status FROM conversations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(patient_id, clinician_id, status)| {
        let status = Status::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("conversation {id} has an invalid status"))
        })?;
        Ok(Header {
            patient_id,
            clinician_id,
            status,
        })
    })
    .transpose()
}

/// A patient's conversations, most recently active first.
pub async fn list_for_patient(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    patient_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<Conversation>, StoreError> {
    let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE patient_id = $1 \
         ORDER BY updated_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind(patient_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| r.open(phi)).collect()
}

/// Closes an open conversation. Returns false if it was not open (or does not exist).
pub async fn close(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE conversations SET status = 'closed', closed_at = $2, updated_at = $2 \
         WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    seq: i64,
    kind: String,
    author_id: Option<String>,
    body_enc: Vec<u8>,
    provenance: Option<String>,
    escalations: String,
    created_at: i64,
}

const MESSAGE_COLUMNS: &str =
    "id, conversation_id, seq, kind, author_id, body_enc, provenance, escalations, created_at";

impl MessageRow {
    fn open(self, phi: &PhiCipher) -> Result<Message, StoreError> {
        let body = phi
            .open("conversation_messages", "body", &self.id, &self.body_enc)?
            .as_str()
            .to_owned();
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("message {} has an invalid {what}", self.id));
        let kind = MessageKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?;
        let provenance = match &self.provenance {
            Some(p) => Some(serde_json::from_str(p).map_err(|_| corrupt("provenance"))?),
            None => None,
        };
        let escalations: Vec<String> =
            serde_json::from_str(&self.escalations).map_err(|_| corrupt("escalations"))?;
        Ok(Message {
            id: self.id,
            conversation_id: self.conversation_id,
            seq: self.seq,
            kind,
            author_id: self.author_id,
            body,
            provenance,
            escalations,
            created_at: self.created_at,
        })
    }
}

/// Appends a message at the end of its conversation (next `seq`) and marks the conversation
/// active. Run it in a transaction: two concurrent appends to one conversation conflict on the
/// `(conversation_id, seq)` key rather than interleave.
pub async fn append_message(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    m: &NewMessage<'_>,
    now: i64,
) -> Result<Message, StoreError> {
    let version = current_version(phi, "conversation_messages")?;
    let body_enc = phi.seal("conversation_messages", "body", m.id, m.body)?;
    let provenance = m.provenance.map(serde_json::Value::to_string);
    let escalations = serde_json::to_string(m.escalations)
        .map_err(|e| StoreError::Corrupt(format!("escalations: {e}")))?;
    // The next number in the conversation is taken in the insert itself: one statement, one
    // round trip. (Two writers numbering the same conversation at once still meet the unique
    // key on (conversation, seq), as before.)
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO conversation_messages (id, conversation_id, seq, kind, author_id, body_enc, \
         key_version, provenance, escalations, created_at) \
         SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8, $9 \
         FROM conversation_messages WHERE conversation_id = $2 RETURNING seq",
    )
    .bind(m.id)
    .bind(m.conversation_id)
    .bind(m.kind.as_str())
    .bind(m.author_id)
    .bind(body_enc)
    .bind(version)
    .bind(provenance)
    .bind(escalations)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| StoreError::unique(e, "conversation message"))?;
    sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
        .bind(m.conversation_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(Message {
        id: m.id.to_owned(),
        conversation_id: m.conversation_id.to_owned(),
        seq,
        kind: m.kind,
        author_id: m.author_id.map(str::to_owned),
        body: m.body.to_owned(),
        provenance: m.provenance.cloned(),
        escalations: m.escalations.to_vec(),
        created_at: now,
    })
}

/// A conversation's messages in order.
pub async fn messages(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    conversation_id: &str,
) -> Result<Vec<Message>, StoreError> {
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM conversation_messages WHERE conversation_id = $1 \
         ORDER BY seq"
    ))
    .bind(conversation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| r.open(phi)).collect()
}

/// The last `limit` messages of a conversation, in order (the history sent with a question):
/// older messages are neither read nor decrypted.
pub async fn recent_messages(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    conversation_id: &str,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM conversation_messages WHERE conversation_id = $1 \
         ORDER BY seq DESC LIMIT $2"
    ))
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().rev().map(|r| r.open(phi)).collect()
}

/// One message.
pub async fn message(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
) -> Result<Option<Message>, StoreError> {
    let row: Option<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM conversation_messages WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.open(phi)).transpose()
}

/// The conversation and patient a message belongs to, without decrypting (for authorisation).
pub async fn message_owner(
    conn: &mut AnyConnection,
    message_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT c.id, c.patient_id FROM conversation_messages m \
         JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1",
    )
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

/// Feedback to record.
#[derive(Debug, Clone)]
pub struct NewFeedback<'a> {
    /// The answer judged.
    pub message_id: &'a str,
    /// The judging user.
    pub user_id: &'a str,
    /// Helpful or not.
    pub helpful: Option<Helpful>,
    /// Correct, incorrect or unsafe.
    pub verdict: Option<Verdict>,
    /// Comment (PHI).
    pub comment: Option<&'a str>,
    /// The answer's model id.
    pub model_id: &'a str,
    /// The answer's model version.
    pub model_version: &'a str,
}

#[derive(FromRow)]
struct FeedbackRow {
    message_id: String,
    user_id: String,
    helpful: Option<String>,
    verdict: Option<String>,
    comment_enc: Option<Vec<u8>>,
    model_id: String,
    model_version: String,
    created_at: i64,
    updated_at: i64,
}

/// The feedback columns, qualified by the alias `f` of `answer_feedback`.
const FEEDBACK_COLUMNS: &str = "f.message_id, f.user_id, f.helpful, f.verdict, f.comment_enc, \
     f.model_id, f.model_version, f.created_at, f.updated_at";

/// The comment's row id: feedback is keyed by (answer, user), so the sealed comment is bound to
/// both.
fn feedback_row_id(message_id: &str, user_id: &str) -> String {
    format!("{message_id}/{user_id}")
}

impl FeedbackRow {
    fn open(self, phi: &PhiCipher) -> Result<Feedback, StoreError> {
        let row_id = feedback_row_id(&self.message_id, &self.user_id);
        let comment = match &self.comment_enc {
            Some(c) => Some(
                phi.open("answer_feedback", "comment", &row_id, c)?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        let corrupt = || StoreError::Corrupt(format!("feedback on {} is invalid", self.message_id));
        let helpful = match &self.helpful {
            Some(h) => Some(Helpful::parse(h).ok_or_else(corrupt)?),
            None => None,
        };
        let verdict = match &self.verdict {
            Some(v) => Some(Verdict::parse(v).ok_or_else(corrupt)?),
            None => None,
        };
        Ok(Feedback {
            message_id: self.message_id,
            user_id: self.user_id,
            helpful,
            verdict,
            comment,
            model_id: self.model_id,
            model_version: self.model_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Records a user's feedback on an answer, replacing their earlier feedback on it. Returns the
/// feedback as stored and the verdict it replaced (`Some(None)` when there was earlier feedback
/// without a verdict, `None` when this is the first).
pub async fn set_feedback(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    f: &NewFeedback<'_>,
    now: i64,
) -> Result<(Feedback, Option<Option<Verdict>>), StoreError> {
    let version = current_version(phi, "answer_feedback")?;
    let row_id = feedback_row_id(f.message_id, f.user_id);
    let comment_enc = f
        .comment
        .map(|c| phi.seal("answer_feedback", "comment", &row_id, c))
        .transpose()?;
    let previous: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT verdict, created_at FROM answer_feedback WHERE message_id = $1 AND user_id = $2",
    )
    .bind(f.message_id)
    .bind(f.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let created_at = previous.as_ref().map_or(now, |p| p.1);
    if previous.is_some() {
        sqlx::query(
            "UPDATE answer_feedback SET helpful = $3, verdict = $4, comment_enc = $5, \
             key_version = $6, updated_at = $7 WHERE message_id = $1 AND user_id = $2",
        )
        .bind(f.message_id)
        .bind(f.user_id)
        .bind(f.helpful.map(Helpful::as_str))
        .bind(f.verdict.map(Verdict::as_str))
        .bind(comment_enc)
        .bind(version)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO answer_feedback (message_id, user_id, helpful, verdict, comment_enc, \
             key_version, model_id, model_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(f.message_id)
        .bind(f.user_id)
        .bind(f.helpful.map(Helpful::as_str))
        .bind(f.verdict.map(Verdict::as_str))
        .bind(comment_enc)
        .bind(version)
        .bind(f.model_id)
        .bind(f.model_version)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::unique(e, "feedback"))?;
    }
    let replaced = match previous {
        Some((v, _)) => Some(match v {
            Some(v) => Some(Verdict::parse(&v).ok_or_else(|| {
                StoreError::Corrupt(format!("feedback on {} is invalid", f.message_id))
            })?),
            None => None,
        }),
        None => None,
    };
    Ok((
        Feedback {
            message_id: f.message_id.to_owned(),
            user_id: f.user_id.to_owned(),
            helpful: f.helpful,
            verdict: f.verdict,
            comment: f.comment.map(str::to_owned),
            model_id: f.model_id.to_owned(),
            model_version: f.model_version.to_owned(),
            created_at,
            updated_at: now,
        },
        replaced,
    ))
}

/// All feedback on the answers of a conversation, in one query (ordered by answer, then user).
pub async fn feedback_in(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    conversation_id: &str,
) -> Result<Vec<Feedback>, StoreError> {
    let rows: Vec<FeedbackRow> = sqlx::query_as(&format!(
        "SELECT {FEEDBACK_COLUMNS} FROM answer_feedback f \
         JOIN conversation_messages m ON m.id = f.message_id \
         WHERE m.conversation_id = $1 ORDER BY f.message_id, f.user_id"
    ))
    .bind(conversation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| r.open(phi)).collect()
}

/// Verdict counts of one model version over feedback updated since `since` (Unix seconds):
/// `(correct, judged)`, where judged counts every verdict. The rolling accuracy is their ratio.
pub async fn verdict_counts(
    conn: &mut AnyConnection,
    model_id: &str,
    model_version: &str,
    since: i64,
) -> Result<(i64, i64), StoreError> {
    let (correct, judged): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN verdict = 'correct' THEN 1 ELSE 0 END), 0), \
         COUNT(verdict) FROM answer_feedback \
         WHERE model_id = $1 AND model_version = $2 AND updated_at >= $3",
    )
    .bind(model_id)
    .bind(model_version)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    Ok((correct, judged))
}

#[derive(FromRow)]
struct NoteRow {
    id: String,
    patient_id: String,
    author_id: String,
    body_enc: Vec<u8>,
    created_at: i64,
}

impl NoteRow {
    fn open(self, phi: &PhiCipher) -> Result<Note, StoreError> {
        let body = phi
            .open("patient_notes", "body", &self.id, &self.body_enc)?
            .as_str()
            .to_owned();
        Ok(Note {
            id: self.id,
            patient_id: self.patient_id,
            author_id: self.author_id,
            body,
            created_at: self.created_at,
        })
    }
}

/// Adds a clinical note to a patient.
pub async fn add_note(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    id: &str,
    patient_id: &str,
    author_id: &str,
    body: &str,
    now: i64,
) -> Result<Note, StoreError> {
    let version = current_version(phi, "patient_notes")?;
    let body_enc = phi.seal("patient_notes", "body", id, body)?;
    sqlx::query(
        "INSERT INTO patient_notes (id, patient_id, author_id, body_enc, key_version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(patient_id)
    .bind(author_id)
    .bind(body_enc)
    .bind(version)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Note {
        id: id.to_owned(),
        patient_id: patient_id.to_owned(),
        author_id: author_id.to_owned(),
        body: body.to_owned(),
        created_at: now,
    })
}

/// A patient's most recent notes, newest first.
pub async fn notes(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    patient_id: &str,
    limit: i64,
) -> Result<Vec<Note>, StoreError> {
    let rows: Vec<NoteRow> = sqlx::query_as(
        "SELECT id, patient_id, author_id, body_enc, created_at FROM patient_notes \
         WHERE patient_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(patient_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|r| r.open(phi)).collect()
}

/// Re-encrypts up to `batch` rows of the assistant's tables (titles, messages, notes, feedback
/// comments) sealed under a data key older than `phi`'s current one, in the caller's
/// transaction. Rows are immutable except feedback, whose update is guarded by the ciphertext
/// read (a concurrent writer already used the current key). Returns how many it re-encrypted;
/// call until it returns 0.
pub async fn reencrypt(
    conn: &mut AnyConnection,
    phi: &PhiCipher,
    batch: i64,
) -> Result<u64, StoreError> {
    let current = current_version(phi, "patient_notes")?;
    let mut n = 0u64;
    for (table, column, id_col) in [
        ("conversations", "title", "id"),
        ("conversation_messages", "body", "id"),
        ("patient_notes", "body", "id"),
    ] {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT {id_col}, {column}_enc FROM {table} WHERE key_version < $1 \
             ORDER BY {id_col} LIMIT $2"
        ))
        .bind(current)
        .bind(batch)
        .fetch_all(&mut *conn)
        .await?;
        for (id, sealed) in rows {
            let plain = phi.open(table, column, &id, &sealed)?;
            let fresh = phi.seal(table, column, &id, &plain)?;
            let r = sqlx::query(&format!(
                "UPDATE {table} SET {column}_enc = $2, key_version = $3 \
                 WHERE {id_col} = $1 AND {column}_enc = $4"
            ))
            .bind(&id)
            .bind(fresh)
            .bind(current)
            .bind(sealed)
            .execute(&mut *conn)
            .await?;
            n += r.rows_affected();
        }
    }
    let rows: Vec<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT message_id, user_id, comment_enc FROM answer_feedback WHERE key_version < $1 \
         ORDER BY message_id, user_id LIMIT $2",
    )
    .bind(current)
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    for (message_id, user_id, sealed) in rows {
        let r = match sealed {
            Some(sealed) => {
                let row_id = feedback_row_id(&message_id, &user_id);
                let plain = phi.open("answer_feedback", "comment", &row_id, &sealed)?;
                let fresh = phi.seal("answer_feedback", "comment", &row_id, &plain)?;
                sqlx::query(
                    "UPDATE answer_feedback SET comment_enc = $3, key_version = $4 \
                     WHERE message_id = $1 AND user_id = $2 AND comment_enc = $5",
                )
                .bind(&message_id)
                .bind(&user_id)
                .bind(fresh)
                .bind(current)
                .bind(sealed)
                .execute(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE answer_feedback SET key_version = $3 \
                     WHERE message_id = $1 AND user_id = $2 AND comment_enc IS NULL",
                )
                .bind(&message_id)
                .bind(&user_id)
                .bind(current)
                .execute(&mut *conn)
                .await?
            }
        };
        n += r.rows_affected();
    }
    Ok(n)
}

/// Rows of the assistant's tables still sealed under a data key older than `current`.
pub async fn rows_under_older_keys(
    conn: &mut AnyConnection,
    current: u32,
) -> Result<i64, StoreError> {
    let mut total = 0;
    for table in [
        "conversations",
        "conversation_messages",
        "patient_notes",
        "answer_feedback",
    ] {
        let (n,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM {table} WHERE key_version < $1"
        ))
        .bind(i64::from(current))
        .fetch_one(&mut *conn)
        .await?;
        total += n;
    }
    Ok(total)
}
