//! The decoder-only transformer of the Qwen2 and Llama families, run from GGUF quantised weights
//! on candle's kernels, with a KV cache the engine controls.
//!
//! candle-transformers has both models, but their KV caches are private: they can only be
//! dropped whole. The engine needs to keep the cache of a prompt's prefix and go on from it
//! (the system prompt that every request starts with, or the conversation so far), which is what
//! makes a first token fast on a CPU. This module is the same computation (tested against
//! candle's implementations, logit for logit, in this module's tests) with a cache that can be cut
//! back to any length and snapshotted.

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::Embedding;
use std::io::{Read, Seek};

/// Most positions whose rotary tables are built at load (the context window is capped to it).
pub(crate) const MAX_ROTARY_POSITIONS: usize = 32_768;

/// How the rotary embedding pairs dimensions: Qwen2 rotates `(i, i + d/2)`, Llama's GGUF
/// weights (permuted by the converter) rotate `(2i, 2i + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rope {
    /// Halves (GPT-NeoX style).
    Halves,
    /// Interleaved pairs.
    Interleaved,
}

struct Norm {
    weight: Tensor,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

struct Layer {
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    out: QMatMul,
    attn_norm: Norm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    ffn_norm: Norm,
}

/// The keys and values of one layer for positions `0..len`, `(1, kv_heads, len, head_dim)`.
/// Tensors are never written in place, so a clone is a cheap, stable snapshot.
#[derive(Clone)]
pub(crate) struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The cache of every layer, for the first `len` positions.
#[derive(Clone, Default)]
pub(crate) struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `len` positions of this cache (views, no copy).
    pub fn truncated(&self, len: usize) -> candle_core::Result<KvCache> {
        if len >= self.len {
            return Ok(self.clone());
        }
        if len == 0 {
            return Ok(KvCache::default());
        }
        let layers = self
            .layers
            .iter()
            .map(|c| {
                Ok(LayerCache {
                    k: c.k.narrow(2, 0, len)?,
                    v: c.v.narrow(2, 0, len)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache { layers, len })
    }
}

/// Shape and numerics read from the GGUF metadata.
struct Hyper {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    rope_base: f32,
    rope: Rope,
}

/// One loaded model.
pub(crate) struct Transformer {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    hyper: Hyper,
    /// Positions the rotary tables cover.
    pub positions: usize,
    device: Device,
}

fn meta_u32(ct: &Content, key: &str) -> candle_core::Result<usize> {
    match ct.metadata.get(key) {
        Some(v) => Ok(v.to_u32()? as usize),
        None => candle_core::bail!("no {key} in the metadata"),
    }
}

fn meta_f32(ct: &Content, key: &str) -> Option<f32> {
    ct.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl Transformer {
    /// Builds the model whose metadata keys start with `arch` (`qwen2` or `llama`), with rotary
    /// tables for `positions` (at most [`MAX_ROTARY_POSITIONS`]).
    pub fn from_gguf<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        arch: &str,
        rope: Rope,
        positions: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let key = |k: &str| format!("{arch}.{k}");
        if meta_u32(ct, &key("expert_count")).unwrap_or(0) > 0 {
            candle_core::bail!("mixture-of-experts models are not supported");
        }
        let heads = meta_u32(ct, &key("attention.head_count"))?;
        let kv_heads = meta_u32(ct, &key("attention.head_count_kv"))?;
        let blocks = meta_u32(ct, &key("block_count"))?;
        let hidden = meta_u32(ct, &key("embedding_length"))?;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            candle_core::bail!("{heads} attention heads cannot share {kv_heads} key/value heads");
        }
        if !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            candle_core::bail!("embedding length {hidden} does not split into {heads} even heads");
        }
        let head_dim = hidden / heads;
        if let Ok(rope_dim) = meta_u32(ct, &key("rope.dimension_count")) {
            if rope_dim != head_dim {
                candle_core::bail!(
                    "partial rotary embeddings ({rope_dim} of {head_dim} dimensions) are not supported"
                );
            }
        }
        let eps = meta_f32(ct, &key("attention.layer_norm_rms_epsilon")).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "no {arch}.attention.layer_norm_rms_epsilon in the metadata"
            ))
        })?;
        let rope_base = meta_f32(ct, &key("rope.freq_base")).unwrap_or(10_000.0);
        let positions = positions.clamp(1, MAX_ROTARY_POSITIONS);

        let mut tensor = |name: &str| ct.tensor(reader, name, device);
        let embed_q = tensor("token_embd.weight")?;
        let embed = Embedding::new(embed_q.dequantize(device)?, hidden);
        let norm = Norm {
            weight: tensor("output_norm.weight")?.dequantize(device)?,
            eps,
        };
        // Tied embeddings when the file has no separate output matrix.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            QMatMul::from_qtensor(tensor("output.weight")?)?
        } else {
            QMatMul::from_qtensor(embed_q)?
        };
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let p = format!("blk.{i}");
            let mut matmul = |n: &str| {
                QMatMul::from_qtensor(ct.tensor(reader, &format!("{p}.{n}.weight"), device)?)
            };
            let q = matmul("attn_q")?;
            let k = matmul("attn_k")?;
            let v = matmul("attn_v")?;
            let out = matmul("attn_output")?;
            let gate = matmul("ffn_gate")?;
            let up = matmul("ffn_up")?;
            let down = matmul("ffn_down")?;
            let mut bias = |n: &str| -> candle_core::Result<Option<Tensor>> {
                let name = format!("{p}.{n}.bias");
                if ct.tensor_infos.contains_key(&name) {
                    Ok(Some(ct.tensor(reader, &name, device)?.dequantize(device)?))
                } else {
                    Ok(None)
                }
            };
            let q_bias = bias("attn_q")?;
            let k_bias = bias("attn_k")?;
            let v_bias = bias("attn_v")?;
            let mut norm_of = |n: &str| -> candle_core::Result<Norm> {
                Ok(Norm {
                    weight: ct
                        .tensor(reader, &format!("{p}.{n}.weight"), device)?
                        .dequantize(device)?,
                    eps,
                })
            };
            let attn_norm = norm_of("attn_norm")?;
            let ffn_norm = norm_of("ffn_norm")?;
            layers.push(Layer {
                q,
                k,
                v,
                q_bias,
                k_bias,
                v_bias,
                out,
                attn_norm,
                gate,
                up,
                down,
                ffn_norm,
            });
        }
        let (cos, sin) = rotary_tables(head_dim, rope_base, positions, device)?;
        Ok(Self {
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            hyper: Hyper {
                heads,
                kv_heads,
                head_dim,
                eps,
                rope_base,
                rope,
            },
            positions,
            device: device.clone(),
        })
    }

    /// Runs `tokens` at the positions after `cache` (which grows by them) and returns the logits
    /// of the token after the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let pos = cache.len;
        let seq = tokens.len();
        if seq == 0 {
            candle_core::bail!("no tokens to run");
        }
        if pos + seq > self.positions {
            candle_core::bail!(
                "position {} is past the model's {}",
                pos + seq,
                self.positions
            );
        }
        if !cache.layers.is_empty() && cache.layers.len() != self.layers.len() {
            candle_core::bail!("the cache does not belong to this model");
        }
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mask = if seq > 1 {
            Some(causal_mask(seq, pos, &self.device)?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mut x = self.embed.forward(&input)?;
        let mut next = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let past = cache.layers.get(i);
            let (attn, kv) = self.attention(layer, &x, past, mask.as_ref(), &cos, &sin)?;
            next.push(kv);
            let h = (attn + &x)?;
            let m = layer.ffn_norm.forward(&h)?;
            let gate = candle_nn::ops::silu(&layer.gate.forward(&m)?)?;
            let mlp = layer.down.forward(&(gate * layer.up.forward(&m)?)?)?;
            x = (mlp + h)?;
        }
        cache.layers = next;
        cache.len = pos + seq;
        let x = self.norm.forward(&x)?;
        let last = x.i((.., seq - 1, ..))?;
        self.output.forward(&last)?.squeeze(0)?.to_dtype(DType::F32)
    }

    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        past: Option<&LayerCache>,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<(Tensor, LayerCache)> {
        let h = &self.hyper;
        let (b, seq, hidden) = x.dims3()?;
        let n = layer.attn_norm.forward(x)?;
        let project =
            |w: &QMatMul, bias: &Option<Tensor>, heads: usize| -> candle_core::Result<Tensor> {
                let mut y = w.forward(&n)?;
                if let Some(bias) = bias {
                    y = y.broadcast_add(bias)?;
                }
                y.reshape((b, seq, heads, h.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
        let q = project(&layer.q, &layer.q_bias, h.heads)?;
        let k = project(&layer.k, &layer.k_bias, h.kv_heads)?;
        let v = project(&layer.v, &layer.v_bias, h.kv_heads)?;
        let rotate = |t: &Tensor| match h.rope {
            Rope::Halves => candle_nn::rotary_emb::rope(t, cos, sin),
            Rope::Interleaved => candle_nn::rotary_emb::rope_i(t, cos, sin),
        };
        let q = rotate(&q)?;
        let k = rotate(&k)?;
        let (k, v) = match past {
            Some(p) => (Tensor::cat(&[&p.k, &k], 2)?, Tensor::cat(&[&p.v, &v], 2)?),
            None => (k, v),
        };
        let kv = LayerCache {
            k: k.clone(),
            v: v.clone(),
        };
        let group = h.heads / h.kv_heads;
        let k = repeat_heads(k, group)?;
        let v = repeat_heads(v, group)?;
        let scale = 1.0 / (h.head_dim as f64).sqrt();
        let mut att = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            att = att.broadcast_add(mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, seq, hidden))?;
        Ok((layer.out.forward(&y)?, kv))
    }

    /// The numerics, for the load log.
    pub fn describe(&self) -> String {
        let h = &self.hyper;
        format!(
            "{} layers, {} heads ({} key/value) of {}, rms eps {}, rope base {} ({:?}), {} positions",
            self.layers.len(),
            h.heads,
            h.kv_heads,
            h.head_dim,
            h.eps,
            h.rope_base,
            h.rope,
            self.positions
        )
    }
}

/// Grouped-query attention: each key/value head serves `group` query heads.
fn repeat_heads(x: Tensor, group: usize) -> candle_core::Result<Tensor> {
    if group == 1 {
        return Ok(x);
    }
    let (b, kv_heads, seq, dim) = x.dims4()?;
    // Concatenating along the sequence axis and reshaping lays each head out `group` times in a
    // row, without a strided copy.
    Tensor::cat(&vec![&x; group], 2)?.reshape((b, kv_heads * group, seq, dim))
}

/// `cos` and `sin` of every position times every rotary frequency, `(positions, head_dim / 2)`.
fn rotary_tables(
    head_dim: usize,
    base: f32,
    positions: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let freqs: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let freqs = Tensor::new(freqs.as_slice(), device)?.reshape((1, head_dim / 2))?;
    let pos = Tensor::arange(0, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?;
    let angles = pos.matmul(&freqs)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Additive mask for `seq` new tokens after `past` cached ones: query `i` sees keys
/// `0..=past + i`.
fn causal_mask(seq: usize, past: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = past + seq;
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;
    use candle_core::quantized::gguf_file;
    use candle_transformers::models::{quantized_llama, quantized_qwen2};

    fn close(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn spread(v: &[f32]) -> f32 {
        let max = v.iter().copied().fold(f32::MIN, f32::max);
        let min = v.iter().copied().fold(f32::MAX, f32::min);
        max - min
    }

    /// candle's own implementation of the family, as the reference.
    enum Reference {
        Qwen2(quantized_qwen2::ModelWeights),
        Llama(quantized_llama::ModelWeights),
    }

    impl Reference {
        fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
            let x = Tensor::new(tokens, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let l = match self {
                Self::Qwen2(m) => m.forward(&x, pos),
                Self::Llama(m) => m.forward(&x, pos),
            };
            l.unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap()
        }
    }

    fn load(arch: Arch) -> (Transformer, Reference, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, _) = crate::fixture::write_tiny_model(dir.path(), arch).unwrap();
        let read = || {
            let mut f = std::fs::File::open(&gguf).unwrap();
            let ct = gguf_file::Content::read(&mut f).unwrap();
            (ct, f)
        };
        let (ct, mut f) = read();
        let rope = match arch {
            Arch::Qwen2 => Rope::Halves,
            Arch::Llama => Rope::Interleaved,
        };
        let ours =
            Transformer::from_gguf(&ct, &mut f, arch.as_str(), rope, 4096, &Device::Cpu).unwrap();
        let (ct, mut f) = read();
        let reference = match arch {
            Arch::Qwen2 => Reference::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap(),
            ),
            Arch::Llama => Reference::Llama(
                quantized_llama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap(),
            ),
        };
        (ours, reference, dir)
    }

    fn logits(t: &Transformer, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
        t.forward(tokens, cache).unwrap().to_vec1::<f32>().unwrap()
    }

    const PROMPT: [u32; 19] = [
        5, 17, 42, 9, 88, 3, 61, 23, 7, 100, 54, 2, 31, 77, 12, 64, 90, 8, 40,
    ];

    /// Our forward pass gives candle's logits, for a prompt and for every decode step after it,
    /// in both families (grouped-query attention, biases, tied or separate output, both rotary
    /// layouts).
    #[test]
    fn logits_match_candles_implementation() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let (ours, mut reference, _dir) = load(arch);
            let mut cache = KvCache::default();
            let a = logits(&ours, &PROMPT, &mut cache);
            let b = reference.forward(&PROMPT, 0);
            assert!(spread(&b) > 1e-3, "{arch:?}: the reference logits are flat");
            assert!(close(&a, &b) < 1e-4, "{arch:?} prompt: {}", close(&a, &b));
            let mut pos = PROMPT.len();
            for token in [11u32, 99, 4] {
                let a = logits(&ours, &[token], &mut cache);
                let b = reference.forward(&[token], pos);
                assert!(
                    close(&a, &b) < 1e-4,
                    "{arch:?} step {pos}: {}",
                    close(&a, &b)
                );
                pos += 1;
            }
            assert_eq!(cache.len(), pos);
        }
    }

    /// Going on from a cut-back cache, or running a prompt in chunks, gives the logits of running
    /// the whole prompt at once; a different continuation after the cut does not see the old one.
    #[test]
    fn a_truncated_cache_continues_exactly() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let (ours, _, _dir) = load(arch);
            let mut whole = KvCache::default();
            let full = logits(&ours, &PROMPT, &mut whole);

            let mut chunked = KvCache::default();
            ours.forward(&PROMPT[..8], &mut chunked).unwrap();
            let c = logits(&ours, &PROMPT[8..], &mut chunked);
            assert!(close(&full, &c) < 1e-4, "{arch:?} chunked");

            // A different sequence shares the first 8 tokens; cut the cache back and go on.
            let mut other = PROMPT;
            other[8] = 150;
            let mut fresh = KvCache::default();
            let expected = logits(&ours, &other, &mut fresh);
            let mut reused = whole.truncated(8).unwrap();
            assert_eq!(reused.len(), 8);
            let got = logits(&ours, &other[8..], &mut reused);
            assert!(
                close(&expected, &got) < 1e-4,
                "{arch:?} reused: {}",
                close(&expected, &got)
            );
            assert!(
                close(&full, &got) > 1e-3,
                "{arch:?}: the changed token made no difference"
            );
            // The snapshot it was cut from is untouched.
            assert_eq!(whole.len(), PROMPT.len());
            let again = logits(&ours, &[3], &mut whole.clone());
            let mut replay = KvCache::default();
            ours.forward(&PROMPT, &mut replay).unwrap();
            let expected = logits(&ours, &[3], &mut replay);
            assert!(close(&again, &expected) < 1e-4, "{arch:?} snapshot changed");
        }
    }

    #[test]
    fn positions_past_the_tables_are_refused() {
        let (ours, _, _dir) = load(Arch::Qwen2);
        let mut cache = KvCache::default();
        let too_many = vec![1u32; ours.positions + 1];
        let err = ours.forward(&too_many, &mut cache).unwrap_err().to_string();
        assert!(err.contains("past the model"), "{err}");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_mask_lets_each_query_see_the_past_and_itself() {
        let m = causal_mask(2, 3, &Device::Cpu).unwrap();
        let rows = m.to_vec2::<f32>().unwrap();
        assert_eq!(rows[0], vec![0.0, 0.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(rows[1], vec![0.0; 5]);
    }

    #[test]
    fn grouped_heads_repeat_each_key_value_head_in_place() {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 2, 2))
            .unwrap();
        let y = repeat_heads(x, 2).unwrap();
        assert_eq!(y.dims4().unwrap(), (1, 4, 2, 2));
        let heads = y.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(heads[0], heads[1]);
        assert_eq!(heads[2], heads[3]);
        assert_ne!(heads[0], heads[2]);
    }
}
