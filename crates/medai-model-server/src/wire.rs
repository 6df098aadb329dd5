//! The OpenAI chat completions wire format: the request as clients send it, checked field by
//! field, and the response and stream chunks as clients expect them.

use crate::error::ApiError;
use medai_llm::{ChatRequest, Message, Role, SamplingParams, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 1024;

/// Request fields this server understands; any other is refused by name rather than silently
/// ignored (a client asking for tools or log-probabilities must learn it gets none).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "user",
];

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    n: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: String,
    content: Content,
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted as OpenAI allows it; not used by the model"
    )]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The model named, if any.
    pub model: Option<String>,
    /// What goes to the provider.
    pub request: ChatRequest,
    /// Stream server-sent events.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
}

/// Parses and checks a request body.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(None, format!("the body is not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(ApiError::invalid(None, "the body must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Some(k.clone()),
            format!("unsupported parameter {k:?}"),
        ));
    }
    if !obj.contains_key("messages") {
        return Err(ApiError::invalid(
            Some("messages".into()),
            "messages is required",
        ));
    }
    let body: Body = serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(None, format!("invalid request: {e}")))?;
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            Some("n".into()),
            "only n = 1 is supported",
        ));
    }
    let stream = body.stream.unwrap_or(false);
    if body.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            Some("stream_options".into()),
            "stream_options is only allowed with stream = true",
        ));
    }
    if body.messages.is_empty() || body.messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(
            Some("messages".into()),
            format!("messages must hold 1 to {MAX_MESSAGES} messages"),
        ));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let param = || Some(format!("messages[{i}]"));
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    param(),
                    format!("role {other:?} is not supported (system, developer, user, assistant)"),
                ))
            }
        };
        let content = match m.content {
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        _ => {
                            return Err(ApiError::invalid(
                                param(),
                                "only text content parts are supported",
                            ))
                        }
                    }
                }
                text
            }
        };
        messages.push(Message::new(role, content));
    }
    if body.max_tokens.is_some() && body.max_completion_tokens.is_some() {
        return Err(ApiError::invalid(
            Some("max_completion_tokens".into()),
            "give max_tokens or max_completion_tokens, not both",
        ));
    }
    let params = SamplingParams {
        temperature: body.temperature,
        top_p: body.top_p,
        max_tokens: body.max_tokens.or(body.max_completion_tokens),
        stop: match body.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
        seed: body.seed,
    };
    params.validate().map_err(|m| {
        let field = m.split_whitespace().next().unwrap_or("").to_owned();
        ApiError::invalid(Some(field), m)
    })?;
    Ok(Parsed {
        model: body.model,
        request: ChatRequest { messages, params },
        stream,
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// Identity of one answer, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct AnswerId {
    /// `chatcmpl-<uuid>`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model id.
    pub model: String,
}

impl AnswerId {
    /// A fresh id for `model`, created at `created` (Unix seconds).
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created,
            model: model.to_owned(),
        }
    }

    /// A stream chunk with `delta` and `finish_reason`.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        })
    }

    /// The usage chunk sent last when `stream_options.include_usage` is set.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage_json(usage),
        })
    }

    /// The whole answer for a request without streaming.
    pub fn completion(&self, text: &str, finish_reason: &str, usage: Usage) -> Value {
        json!({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason}],
            "usage": usage_json(usage),
        })
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        match parse(body.as_bytes()) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_full_request() {
        let p = parse(
            br#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "stream":true,"stream_options":{"include_usage":true},"temperature":0.2,"top_p":0.9,
            "max_completion_tokens":7,"stop":"\n\n","seed":3,"n":1,"user":"x"}"#,
        )
        .unwrap();
        assert_eq!(p.model.as_deref(), Some("m"));
        assert!(p.stream && p.include_usage);
        assert_eq!(p.request.messages[0].role, Role::System);
        assert_eq!(p.request.messages[1].content, "ab");
        assert_eq!(p.request.params.max_tokens, Some(7));
        assert_eq!(p.request.params.stop, vec!["\n\n".to_owned()]);
        assert_eq!(p.request.params.seed, Some(3));
        let p =
            parse(br#"{"messages":[{"role":"user","content":"hi"}],"stop":["a","b"]}"#).unwrap();
        assert!(!p.stream && p.model.is_none());
        assert_eq!(p.request.params.stop.len(), 2);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("not json", None),
            ("[1]", None),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"messages":[]}"#, Some("messages")),
            (
                r#"{"messages":[{"role":"tool","content":"x"}]}"#,
                Some("messages[0]"),
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                Some("messages[0]"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[]}"#,
                Some("tools"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
                Some("n"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                Some("temperature"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                Some("top_p"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                Some("stop"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                Some("stream_options"),
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":1,"max_completion_tokens":1}"#,
                Some("max_completion_tokens"),
            ),
            (r#"{"messages":[{"role":"user"}]}"#, None),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"seed":-1}"#,
                None,
            ),
        ];
        for (body, param) in cases {
            let e = err(body);
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
        let many = format!(
            r#"{{"messages":[{}]}}"#,
            vec![r#"{"role":"user","content":"x"}"#; MAX_MESSAGES + 1].join(",")
        );
        assert_eq!(err(&many).param.as_deref(), Some("messages"));
    }

    #[test]
    fn chunks_and_completion_have_the_openai_shape() {
        let id = AnswerId::new("tiny", 1_700_000_000);
        assert_eq!(id.chunk(json!({}), None)["created"], 1_700_000_000);
        assert!(id.id.starts_with("chatcmpl-"));
        let c = id.chunk(json!({"content": "x"}), None);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["delta"]["content"], "x");
        assert!(c["choices"][0]["finish_reason"].is_null());
        let u = id.usage_chunk(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
        });
        assert_eq!(u["usage"]["total_tokens"], 7);
        assert_eq!(u["choices"].as_array().unwrap().len(), 0);
        let full = id.completion(
            "hi",
            "stop",
            Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
        );
        assert_eq!(full["choices"][0]["message"]["content"], "hi");
        assert_eq!(full["object"], "chat.completion");
    }
}
