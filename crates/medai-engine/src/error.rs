//! Why a model could not be loaded or a prompt prepared.

use std::path::PathBuf;

/// A failure of the engine outside a running generation (those are [`medai_llm::LlmError`]s).
/// `Display` names the file and what is wrong with it; it never quotes prompt text.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is unusable.
    #[error("engine config: {0}")]
    Config(String),
    /// A file could not be opened or read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The GGUF file is not a valid model file (corrupt, truncated, or missing metadata).
    #[error("{path}: not a usable GGUF model: {message}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The GGUF file is a model of an architecture this engine does not run.
    #[error("{path}: unsupported model architecture \"{arch}\" (supported: qwen2, llama)")]
    UnsupportedArch {
        /// The file.
        path: PathBuf,
        /// `general.architecture` as the file gives it.
        arch: String,
    },
    /// The tokenizer file could not be loaded.
    #[error("{path}: not a usable tokenizer.json: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The chat template does not compile or failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// Running the model failed.
    #[error("inference: {0}")]
    Inference(String),
    /// The prompt does not fit the context window.
    #[error("the prompt is {prompt_tokens} tokens and asks for {max_tokens} more, but the model's context window is {context_window} tokens; shorten the conversation or lower max_tokens")]
    ContextExceeded {
        /// Tokens of the rendered prompt.
        prompt_tokens: usize,
        /// Tokens asked for (0 when max_tokens is unset).
        max_tokens: usize,
        /// The model's context window.
        context_window: usize,
    },
}
