//! Loading a GGUF file into one of candle's quantised model implementations, and running it.

use crate::error::EngineError;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
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

enum Weights {
    Qwen2(quantized_qwen2::ModelWeights),
    Llama(quantized_llama::ModelWeights),
}

/// Most tokens processed in one forward pass of the prompt; longer prompts go in chunks, so the
/// attention matrix stays small.
const PREFILL_CHUNK: usize = 512;

/// A loaded model and what its metadata says about it.
pub(crate) struct LoadedModel {
    weights: Weights,
    device: Device,
    /// The family.
    pub arch: Arch,
    /// Positions the implementation can run (the GGUF context length; at most 4096 for Llama,
    /// whose rotary table candle builds that long).
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
            .map(|c| c as usize)
            .unwrap_or(quantized_llama::MAX_SEQ_LEN);
        let max_positions = match arch {
            Arch::Qwen2 => context_length,
            Arch::Llama => context_length.min(quantized_llama::MAX_SEQ_LEN),
        };
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
        let weights = match arch {
            Arch::Qwen2 => Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, device)
                    .map_err(|e| gguf_err(path, e.to_string()))?,
            ),
            Arch::Llama => Weights::Llama(
                quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)
                    .map_err(|e| gguf_err(path, e.to_string()))?,
            ),
        };
        Ok(Self {
            weights,
            device: device.clone(),
            arch,
            max_positions,
            name,
            chat_template,
            bos_token_id,
            end_token_ids,
        })
    }

    fn forward_once(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        match &mut self.weights {
            Weights::Qwen2(m) => m.forward(&input, pos),
            Weights::Llama(m) => m.forward(&input, pos),
        }
    }

    /// Runs `tokens` at positions `pos..` (position 0 starts a new sequence and drops the KV
    /// cache) and returns the logits for the token after the last one.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, EngineError> {
        let run = |this: &mut Self| -> candle_core::Result<Vec<f32>> {
            let mut logits = None;
            let mut at = pos;
            for chunk in tokens.chunks(PREFILL_CHUNK) {
                logits = Some(this.forward_once(chunk, at)?);
                at += chunk.len();
            }
            match logits {
                Some(l) => l.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>(),
                None => candle_core::bail!("no tokens to run"),
            }
        };
        if pos + tokens.len() > self.max_positions {
            return Err(EngineError::Inference(format!(
                "position {} is past the model's {} positions",
                pos + tokens.len(),
                self.max_positions
            )));
        }
        run(self).map_err(|e| EngineError::Inference(e.to_string()))
    }

    /// Frees the KV cache.
    pub fn clear(&mut self) {
        match &mut self.weights {
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Llama(m) => m.clear_kv_cache(),
        }
    }
}
