//! Random-weight GGUF models and a matching `tokenizer.json`, written by code, for tests and
//! benchmarks (feature `fixtures`). The files are real: the engine loads them through the same
//! path as downloaded weights. The weights are deterministic (a fixed seed per tensor), so a
//! fixture model always generates the same text for the same request and seed.

use crate::error::EngineError;
use crate::model::Arch;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// How the weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// 8-bit blocks of 32 (needs every matrix's input size to be a multiple of 32).
    Q8_0,
    /// 4-bit k-quants in blocks of 256, with the embedding in Q6_K as in published Q4_K_M
    /// files (which also put some `attn_v`/`ffn_down` in Q6_K; here those stay Q4_K).
    Q4KM,
}

/// The shape of a model: what the GGUF metadata says and the tensors hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    /// The family.
    pub arch: Arch,
    /// `general.name`.
    pub name: String,
    /// Hidden size (`embedding_length`).
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// MLP width (`feed_forward_length`).
    pub intermediate: usize,
    /// Embedding rows (at least the tokenizer's vocabulary; real models pad it).
    pub vocab: usize,
    /// `context_length`.
    pub context: u32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Whether the output projection reuses the embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Weight storage.
    pub quant: Quant,
}

impl ModelShape {
    /// A tiny model of `arch` (hidden 64, 2 layers) sized for the fixture tokenizer.
    pub fn tiny(arch: Arch) -> Self {
        Self {
            arch,
            name: format!("medai-tiny-{}", arch.as_str()),
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            vocab: Vocabulary::for_arch(arch).len(),
            context: 2048,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            tied_embeddings: arch == Arch::Qwen2,
            quant: Quant::Q8_0,
        }
    }

    /// The shape of Qwen2.5-0.5B-Instruct, as its Q8_0 GGUF.
    pub fn qwen2_5_0_5b() -> Self {
        Self {
            arch: Arch::Qwen2,
            name: "qwen2.5-0.5b-instruct (random weights)".into(),
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            intermediate: 4864,
            vocab: 151_936,
            context: 32_768,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            tied_embeddings: true,
            quant: Quant::Q8_0,
        }
    }

    /// The shape of Qwen2.5-1.5B-Instruct, as its Q4_K_M GGUF.
    pub fn qwen2_5_1_5b() -> Self {
        Self {
            arch: Arch::Qwen2,
            name: "qwen2.5-1.5b-instruct (random weights)".into(),
            hidden: 1536,
            layers: 28,
            heads: 12,
            kv_heads: 2,
            intermediate: 8960,
            vocab: 151_936,
            context: 32_768,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            tied_embeddings: true,
            quant: Quant::Q4KM,
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads.max(1)
    }
}

/// The fixture tokenizer's vocabulary: the 256 byte-level symbols (ids 0 to 255), then the
/// special tokens of the family's chat format.
struct Vocabulary {
    specials: &'static [&'static str],
    bos: Option<&'static str>,
    eos: &'static str,
    template: &'static str,
}

/// A ChatML template in the style of Qwen2.5's: a default system message, and an error for a
/// role it does not know.
const QWEN_TEMPLATE: &str = "{%- if messages[0]['role'] != 'system' %}\n    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] not in ['system', 'user', 'assistant'] %}\n        {{- raise_exception('unknown role: ' ~ message['role']) }}\n    {%- endif %}\n    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

/// A Llama 3 header template: BOS first, trimmed contents, and an error when user and assistant
/// do not alternate.
const LLAMA_TEMPLATE: &str = "{{- bos_token }}\n{%- set ns = namespace(last='') %}\n{%- for message in messages %}\n    {%- if message.role == ns.last and message.role != 'system' %}\n        {{- raise_exception('conversation roles must alternate user/assistant') }}\n    {%- endif %}\n    {%- set ns.last = message.role %}\n    {{- '<|start_header_id|>' ~ message.role ~ '<|end_header_id|>\\n\\n' ~ message.content.strip() ~ '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n";

impl Vocabulary {
    fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::Qwen2 => Self {
                specials: &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                bos: None,
                eos: "<|im_end|>",
                template: QWEN_TEMPLATE,
            },
            Arch::Llama => Self {
                specials: &[
                    "<|begin_of_text|>",
                    "<|end_of_text|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                ],
                bos: Some("<|begin_of_text|>"),
                eos: "<|eot_id|>",
                template: LLAMA_TEMPLATE,
            },
        }
    }

    fn len(&self) -> usize {
        256 + self.specials.len()
    }

    fn id(&self, token: &str) -> Option<u32> {
        let i = self.specials.iter().position(|t| *t == token)?;
        u32::try_from(256 + i).ok()
    }
}

/// GPT-2's byte-to-symbol map that byte-level BPE uses: printable bytes stand for themselves,
/// the others are shifted past 255.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

/// The byte-level BPE `tokenizer.json` text for `arch`'s vocabulary.
fn tokenizer_json(vocab: &Vocabulary) -> String {
    let symbols = byte_symbols();
    let mut map = BTreeMap::new();
    for (id, c) in symbols.iter().enumerate() {
        map.insert(c.to_string(), id);
    }
    let added: Vec<serde_json::Value> = vocab
        .specials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({
                "id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": map, "merges": []
        }
    })
    .to_string()
}

/// SplitMix64: fast, deterministic numbers for the weights.
struct Numbers(u64);

impl Numbers {
    fn new(name: &str) -> Self {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Self(seed)
    }

    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Uniform in [-1, 1).
        ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn inference(e: candle_core::Error) -> EngineError {
    EngineError::Inference(e.to_string())
}

/// A `rows x cols` matrix of uniform values scaled by `1/sqrt(cols)`, quantised as `dtype`.
fn matrix(name: &str, rows: usize, cols: usize, dtype: GgmlDType) -> Result<QTensor, EngineError> {
    let mut numbers = Numbers::new(name);
    let scale = 1.0 / (cols as f32).sqrt();
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| numbers.next_f32() * scale)
        .collect();
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).map_err(inference)?;
    QTensor::quantize(&t, dtype).map_err(inference)
}

fn vector(name: &str, len: usize, fill: Option<f32>) -> Result<QTensor, EngineError> {
    let mut numbers = Numbers::new(name);
    let data: Vec<f32> = (0..len)
        .map(|_| fill.unwrap_or_else(|| numbers.next_f32() * 0.1))
        .collect();
    let t = Tensor::from_vec(data, len, &Device::Cpu).map_err(inference)?;
    QTensor::quantize(&t, GgmlDType::F32).map_err(inference)
}

fn io(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes the fixture `tokenizer.json` of `arch`'s chat format to `path`.
pub fn write_tokenizer(path: &Path, arch: Arch) -> Result<(), EngineError> {
    std::fs::write(path, tokenizer_json(&Vocabulary::for_arch(arch))).map_err(|e| io(path, e))
}

/// Writes a GGUF file of `shape` with random weights, the metadata candle's loaders read, the
/// fixture tokenizer's special token ids and `chat_template` (the family's fixture template
/// when `None`; pass `Some("")` for a file without one).
pub fn write_gguf(
    path: &Path,
    shape: &ModelShape,
    chat_template: Option<&str>,
) -> Result<(), EngineError> {
    let vocab = Vocabulary::for_arch(shape.arch);
    let (big, small) = match shape.quant {
        Quant::Q8_0 => (GgmlDType::Q8_0, GgmlDType::Q8_0),
        Quant::Q4KM => (GgmlDType::Q4K, GgmlDType::Q6K),
    };
    let arch = shape.arch.as_str();
    let hd = shape.head_dim();
    let u32_of = |v: usize| Value::U32(u32::try_from(v).unwrap_or(u32::MAX));
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(shape.name.clone())),
        (format!("{arch}.context_length"), Value::U32(shape.context)),
        (format!("{arch}.embedding_length"), u32_of(shape.hidden)),
        (format!("{arch}.block_count"), u32_of(shape.layers)),
        (
            format!("{arch}.feed_forward_length"),
            u32_of(shape.intermediate),
        ),
        (format!("{arch}.attention.head_count"), u32_of(shape.heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u32_of(shape.kv_heads),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(shape.rms_eps),
        ),
        (
            format!("{arch}.rope.freq_base"),
            Value::F32(shape.rope_theta),
        ),
        (format!("{arch}.rope.dimension_count"), u32_of(hd)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
    ];
    if let Some(id) = vocab.bos.and_then(|t| vocab.id(t)) {
        metadata.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = vocab.id(vocab.eos) {
        metadata.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    let template = chat_template.unwrap_or(vocab.template);
    if !template.is_empty() {
        metadata.push((
            "tokenizer.chat_template".into(),
            Value::String(template.into()),
        ));
    }

    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let h = shape.hidden;
    tensors.push((
        "token_embd.weight".into(),
        matrix("token_embd", shape.vocab, h, small)?,
    ));
    tensors.push((
        "output_norm.weight".into(),
        vector("output_norm", h, Some(1.0))?,
    ));
    if !shape.tied_embeddings {
        tensors.push((
            "output.weight".into(),
            matrix("output", shape.vocab, h, small)?,
        ));
    }
    for i in 0..shape.layers {
        let p = format!("blk.{i}");
        let q = shape.heads * hd;
        let kv = shape.kv_heads * hd;
        let mut add = |name: &str, t: QTensor| tensors.push((format!("{p}.{name}"), t));
        add("attn_q.weight", matrix(&format!("{p}.q"), q, h, big)?);
        add("attn_k.weight", matrix(&format!("{p}.k"), kv, h, big)?);
        add("attn_v.weight", matrix(&format!("{p}.v"), kv, h, big)?);
        add("attn_output.weight", matrix(&format!("{p}.o"), h, q, big)?);
        add(
            "ffn_gate.weight",
            matrix(&format!("{p}.gate"), shape.intermediate, h, big)?,
        );
        add(
            "ffn_up.weight",
            matrix(&format!("{p}.up"), shape.intermediate, h, big)?,
        );
        add(
            "ffn_down.weight",
            matrix(&format!("{p}.down"), h, shape.intermediate, big)?,
        );
        add(
            "attn_norm.weight",
            vector(&format!("{p}.attn_norm"), h, Some(1.0))?,
        );
        add(
            "ffn_norm.weight",
            vector(&format!("{p}.ffn_norm"), h, Some(1.0))?,
        );
        if shape.arch == Arch::Qwen2 {
            add("attn_q.bias", vector(&format!("{p}.bq"), q, None)?);
            add("attn_k.bias", vector(&format!("{p}.bk"), kv, None)?);
            add("attn_v.bias", vector(&format!("{p}.bv"), kv, None)?);
        }
    }

    let file = File::create(path).map_err(|e| io(path, e))?;
    let mut writer = BufWriter::new(file);
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut writer, &metadata_refs, &tensor_refs).map_err(|e| io(path, e))?;
    std::io::Write::flush(&mut writer).map_err(|e| io(path, e))
}

/// Writes a tiny random-weight model of `arch` and its tokenizer into `dir`; returns the paths of
/// the GGUF file and the `tokenizer.json`. The GGUF carries a chat template in the family's style
/// (ChatML for Qwen2, Llama 3 headers for Llama).
pub fn write_tiny_model(dir: &Path, arch: Arch) -> Result<(PathBuf, PathBuf), EngineError> {
    write_model(dir, &ModelShape::tiny(arch), None)
}

/// Writes a random-weight model of `shape` and the fixture tokenizer into `dir` (see
/// [`write_gguf`] for `chat_template`); returns the paths of the GGUF file and the tokenizer.
pub fn write_model(
    dir: &Path,
    shape: &ModelShape,
    chat_template: Option<&str>,
) -> Result<(PathBuf, PathBuf), EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let stem = shape
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let gguf = dir.join(format!("{stem}.gguf"));
    let tokenizer = dir.join(format!("{stem}.tokenizer.json"));
    write_tokenizer(&tokenizer, shape.arch)?;
    write_gguf(&gguf, shape, chat_template)?;
    Ok((gguf, tokenizer))
}
