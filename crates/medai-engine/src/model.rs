//! Loading a GGUF file into the engine's transformer, and running prompts on it with the kept
//! KV caches (the warmed-up prefix and the sequence run last).

use crate::error::EngineError;
use crate::transformer::{KvCache, Rope, Transformer, MAX_ROTARY_POSITIONS};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// The model families the engine runs (`general.architecture` of the GGUF file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Qwen2 and Qwen2.5 (`qwen2`).
    Qwen2,
    /// Llama 2/3 and Llama-shaped models such as SmolLM2 (`llama`).
    Llama,
}

impl Arch {
    /// The `general.architecture` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
        }
    }
}

/// Most tokens processed in one forward pass of the prompt; longer prompts go in chunks, so the
/// attention matrix stays small.
const PREFILL_CHUNK: usize = 512;

/// The tokens whose keys and values a cache holds, with the cache.
struct Cached {
    tokens: Vec<u32>,
    cache: KvCache,
}

/// Length of the common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A loaded model and what its metadata says about it.
pub(crate) struct LoadedModel {
    transformer: Transformer,
    /// The sequence run last (prompt and generated tokens), kept so that the next prompt that
    /// starts the same way (the same conversation, one turn later) goes on from it.
    live: Cached,
    /// The warmed-up prefix (the system prompt most requests start with), kept for good.
    pinned: Option<Cached>,
    /// The family.
    pub arch: Arch,
    /// Positions the implementation can run (the GGUF context length, at most
    /// [`MAX_ROTARY_POSITIONS`]).
    pub max_positions: usize,
    /// `general.name`, if given.
    pub name: Option<String>,
    /// `tokenizer.chat_template`, if given.
    pub chat_template: Option<String>,
    /// `tokenizer.ggml.bos_token_id`, if given.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id` and `tokenizer.ggml.eot_token_id`, where given.
    pub end_token_ids: Vec<u32>,
}

fn gguf_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Gguf {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn meta_u32(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn meta_string(content: &Content, key: &str) -> Option<String> {
    match content.metadata.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Bytes a tensor of `info` occupies in the file.
fn tensor_bytes(info: &candle_core::quantized::gguf_file::TensorInfo) -> Option<u64> {
    let elems = info.shape.elem_count();
    let block = info.ggml_dtype.block_size();
    if block == 0 || !elems.is_multiple_of(block) {
        return None;
    }
    u64::try_from((elems / block).checked_mul(info.ggml_dtype.type_size())?).ok()
}

impl LoadedModel {
    /// Reads and checks the GGUF file, then builds the model on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self, EngineError> {
        let file = File::open(path).map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            message: format!("cannot open ({e})"),
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| EngineError::Io {
                path: path.to_path_buf(),
                message: format!("cannot read ({e})"),
            })?
            .len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| gguf_err(path, e.to_string()))?;
        // A truncated file has a whole header but tensors that run past its end; say so plainly
        // rather than with an I/O error from the middle of loading.
        for (name, info) in &content.tensor_infos {
            let size = tensor_bytes(info)
                .ok_or_else(|| gguf_err(path, format!("tensor {name} has an invalid shape")))?;
            let end = content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|o| o.checked_add(size));
            if end.is_none_or(|end| end > file_len) {
                return Err(gguf_err(
                    path,
                    format!("the file is truncated (tensor {name} extends past its end of {file_len} bytes)"),
                ));
            }
        }
        let arch_name = meta_string(&content, "general.architecture")
            .ok_or_else(|| gguf_err(path, "no general.architecture in the metadata"))?;
        let arch = match arch_name.as_str() {
            "qwen2" => Arch::Qwen2,
            "llama" => Arch::Llama,
            other => {
                return Err(EngineError::UnsupportedArch {
                    path: path.to_path_buf(),
                    arch: other.to_string(),
                })
            }
        };
        let context_length = meta_u32(&content, &format!("{arch_name}.context_length"))
            .map_or(MAX_ROTARY_POSITIONS, |c| c as usize);
        let max_positions = context_length.min(MAX_ROTARY_POSITIONS);
        if max_positions == 0 {
            return Err(gguf_err(path, format!("{arch_name}.context_length is 0")));
        }
        let name = meta_string(&content, "general.name");
        let chat_template = meta_string(&content, "tokenizer.chat_template");
        let bos_token_id = meta_u32(&content, "tokenizer.ggml.bos_token_id");
        let mut end_token_ids = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = meta_u32(&content, key) {
                if !end_token_ids.contains(&id) {
                    end_token_ids.push(id);
                }
            }
        }
        let rope = match arch {
            Arch::Qwen2 => Rope::Halves,
            Arch::Llama => Rope::Interleaved,
        };
        let transformer = Transformer::from_gguf(
            &content,
            &mut reader,
            &arch_name,
            rope,
            max_positions,
            device,
        )
        .map_err(|e| gguf_err(path, e.to_string()))?;
        tracing::debug!(model = %transformer.describe(), "model built");
        Ok(Self {
            transformer,
            live: Cached {
                tokens: Vec::new(),
                cache: KvCache::default(),
            },
            pinned: None,
            arch,
            max_positions,
            name,
            chat_template,
            bos_token_id,
            end_token_ids,
        })
    }

    fn inference(e: candle_core::Error) -> EngineError {
        EngineError::Inference(e.to_string())
    }

    fn check_positions(&self, end: usize) -> Result<(), EngineError> {
        if end > self.max_positions {
            return Err(EngineError::Inference(format!(
                "position {end} is past the model's {} positions",
                self.max_positions
            )));
        }
        Ok(())
    }

    /// Runs a new prompt and returns the logits for the token after it, with how many of its
    /// tokens were already in a cache (the longest prefix shared with the sequence run last or
    /// with the pinned prefix; at least the last token is always run, for its logits).
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<(Vec<f32>, usize), EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::Inference("no tokens to run".into()));
        }
        self.check_positions(prompt.len())?;
        let limit = prompt.len() - 1;
        let from_live = common_prefix(&self.live.tokens, prompt).min(limit);
        let from_pinned = self
            .pinned
            .as_ref()
            .map_or(0, |p| common_prefix(&p.tokens, prompt).min(limit));
        let (reused, base) = match &self.pinned {
            Some(p) if from_pinned > from_live => (from_pinned, &p.cache),
            _ => (from_live, &self.live.cache),
        };
        let cache = base.truncated(reused).map_err(Self::inference)?;
        self.live = Cached {
            tokens: prompt[..reused].to_vec(),
            cache,
        };
        let mut logits = None;
        for chunk in prompt[reused..].chunks(PREFILL_CHUNK) {
            match self.transformer.forward(chunk, &mut self.live.cache) {
                Ok(l) => {
                    self.live.tokens.extend_from_slice(chunk);
                    logits = Some(l);
                }
                Err(e) => {
                    self.clear();
                    return Err(Self::inference(e));
                }
            }
        }
        let logits = logits.ok_or_else(|| EngineError::Inference("no tokens to run".into()))?;
        let logits = logits.to_vec1::<f32>().map_err(Self::inference)?;
        Ok((logits, reused))
    }

    /// Runs one more token of the current sequence and returns the logits for the next.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>, EngineError> {
        self.check_positions(self.live.tokens.len() + 1)?;
        let out = self
            .transformer
            .forward(&[token], &mut self.live.cache)
            .and_then(|l| l.to_vec1::<f32>());
        match out {
            Ok(l) => {
                self.live.tokens.push(token);
                Ok(l)
            }
            Err(e) => {
                self.clear();
                Err(Self::inference(e))
            }
        }
    }

    /// Keeps the first `len` tokens of the current sequence's cache for good, so that any later
    /// prompt that starts with them does not run them again.
    pub fn pin_prefix(&mut self, len: usize) -> Result<(), EngineError> {
        let len = len.min(self.live.tokens.len());
        let cache = self.live.cache.truncated(len).map_err(Self::inference)?;
        self.pinned = (len > 0).then(|| Cached {
            tokens: self.live.tokens[..len].to_vec(),
            cache,
        });
        Ok(())
    }

    /// Tokens of the pinned prefix.
    pub fn pinned_len(&self) -> usize {
        self.pinned.as_ref().map_or(0, |p| p.cache.len())
    }

    /// Drops the current sequence's cache (the pinned prefix stays).
    pub fn clear(&mut self) {
        self.live = Cached {
            tokens: Vec::new(),
            cache: KvCache::default(),
        };
    }
}
