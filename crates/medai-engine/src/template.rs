//! The model's chat template (Jinja, as Hugging Face writes it), rendered with minijinja plus the
//! functions and Python string methods such templates use.

use crate::error::EngineError;
use crate::model::Arch;
use medai_llm::{Message, Role};
use minijinja::{context, Environment, Error, ErrorKind, Value};

/// ChatML, used by Qwen2 and SmolLM2 when the file carries no template.
const CHATML: &str = "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The Llama 3 header format, for Llama files with no template whose vocabulary has its tokens.
const LLAMA3: &str = "{{- bos_token }}{%- for message in messages %}<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n{{ message.content | trim }}<|eot_id|>{%- endfor %}{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// The Llama 2 `[INST]` format, the last resort for Llama files with no template.
const LLAMA2: &str = "{%- if messages[0].role == 'system' %}{%- set system = '<<SYS>>\n' ~ messages[0].content ~ '\n<</SYS>>\n\n' %}{%- set rest = messages[1:] %}{%- else %}{%- set system = '' %}{%- set rest = messages %}{%- endif %}{%- for message in rest %}{%- if message.role == 'user' %}{{ bos_token }}[INST] {% if loop.first %}{{ system }}{% endif %}{{ message.content | trim }} [/INST]{%- elif message.role == 'assistant' %} {{ message.content | trim }} {{ eos_token }}{%- else %}{{ raise_exception('roles must be user or assistant after the system message') }}{%- endif %}{%- endfor %}";

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` as Llama 3.x templates call it (UTC), for the common directives.
#[allow(
    clippy::disallowed_methods,
    reason = "the template asks for today's date, as transformers gives it; nothing is stored or compared"
)]
fn strftime_now(format: String) -> Result<String, Error> {
    let now = time::OffsetDateTime::now_utc();
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{:02}", now.day())),
            Some('m') => out.push_str(&format!("{:02}", u8::from(now.month()))),
            Some('Y') => out.push_str(&now.year().to_string()),
            Some('y') => out.push_str(&format!("{:02}", now.year().rem_euclid(100))),
            Some('B') => out.push_str(&now.month().to_string()),
            Some('b') => out.extend(now.month().to_string().chars().take(3)),
            Some('H') => out.push_str(&format!("{:02}", now.hour())),
            Some('M') => out.push_str(&format!("{:02}", now.minute())),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.unwrap_or(' ')
                    ),
                ))
            }
        }
    }
    Ok(out)
}

impl ChatTemplate {
    /// Compiles `source` (Jinja as in `tokenizer_config.json` / GGUF `tokenizer.chat_template`).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        // As transformers renders them.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The family default for a file without a template: ChatML for Qwen2, and for Llama the
    /// format whose special tokens the vocabulary has (Llama 3 headers, ChatML as in SmolLM2, or
    /// Llama 2 `[INST]`).
    pub fn family_default(
        arch: Arch,
        has_token: impl Fn(&str) -> bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, EngineError> {
        let source = match arch {
            Arch::Qwen2 => CHATML,
            Arch::Llama if has_token("<|start_header_id|>") => LLAMA3,
            Arch::Llama if has_token("<|im_start|>") => CHATML,
            Arch::Llama => LLAMA2,
        };
        Self::new(source, bos_token, eos_token)
    }

    /// Renders the conversation, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[Message]) -> Result<String, EngineError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                context! { role => role, content => m.content.as_str() }
            })
            .collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            // The error names the template line, never the message text.
            .map_err(|e| EngineError::Template(template_error(&e)))
    }
}

fn template_error(e: &Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        _ => format!("{} (line {})", e.kind(), e.line().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn msgs() -> Vec<Message> {
        vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "  Hi there  "),
        ]
    }

    #[test]
    fn defaults_render_each_family() {
        let t = ChatTemplate::family_default(Arch::Qwen2, |_| false, "", "<|im_end|>").unwrap();
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi there  <|im_end|>\n<|im_start|>assistant\n"
        );
        let t = ChatTemplate::family_default(
            Arch::Llama,
            |t| t == "<|start_header_id|>",
            "<|begin_of_text|>",
            "<|eot_id|>",
        )
        .unwrap();
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let t = ChatTemplate::family_default(Arch::Llama, |_| false, "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]"
        );
    }

    #[test]
    fn hf_functions_and_python_methods_work() {
        let source = "{% for m in messages %}{% if m.role not in ['system', 'user'] %}{{ raise_exception('bad role ' ~ m.role) }}{% endif %}{{ m.content.strip() | tojson }}|{% endfor %}{{ strftime_now('%Y') | length }}";
        let t = ChatTemplate::new(source, "", "").unwrap();
        assert_eq!(t.render(&msgs()).unwrap(), "\"Be brief.\"|\"Hi there\"|4");
        let mut bad = msgs();
        bad.push(Message::new(Role::Assistant, "x"));
        let err = t.render(&bad).unwrap_err().to_string();
        assert!(err.contains("bad role assistant"), "{err}");
    }

    #[test]
    fn a_broken_template_is_refused_at_load() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(err.to_string().starts_with("chat template:"), "{err}");
    }
}
