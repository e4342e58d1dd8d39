//! Gemma 3 on candle's ops and quantized matmuls: the cross-check engine for the native
//! decoder's Gemma 3.
//!
//! candle-transformers 0.11's own `quantized_gemma3` cannot be that reference: its
//! feed-forward uses SiLU where Gemma uses gelu-tanh (huggingface/candle#3745, fix proposed
//! in #3747), its decode steps skip the sliding-window mask, and a prompt fed after earlier
//! tokens masks every cached position (#3299). This module follows its structure (candle
//! `QMatMul`, `rms_norm`, `rotary_emb::rope`, `softmax_last_dim`, a concatenated KV cache) with
//! those three points fixed as llama.cpp's `gemma3` graph does them; no code is shared with
//! `edgeai-llm`'s decoder, so the two implementations check each other.

use std::path::Path;

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Module, Tensor};
use edgeai_llm::{Error as LlmError, LanguageModel, Result as LlmResult};

use crate::{candle_err, Error};

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    q_norm: Tensor,
    k_norm: Tensor,
    attn_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    post_ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    /// `Some(window)` on a sliding-window layer.
    window: Option<usize>,
    cache: Option<(Tensor, Tensor)>,
}

/// Gemma 3 on candle (see the module docs) as a [`LanguageModel`].
pub struct CandleGemma3 {
    embd: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    dim: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    attn_scale: f64,
    final_softcap: Option<f64>,
    /// RoPE `(cos, sin)` of the global and of the sliding layers, `ctx x head_dim / 2`.
    rope_global: (Tensor, Tensor),
    rope_local: (Tensor, Tensor),
    vocab: usize,
    ctx: usize,
    history: Vec<u32>,
    logits: Vec<f32>,
    /// Always `Some` outside [`CandleGemma3::feed`].
    pool: Option<edgeai_core::RunPool>,
}

impl std::fmt::Debug for CandleGemma3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleGemma3")
            .field("vocab", &self.vocab)
            .field("ctx", &self.ctx)
            .field("pos", &self.history.len())
            .finish()
    }
}

fn rope_tables(
    ctx: usize,
    head_dim: usize,
    theta: f64,
    scale: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        for i in 0..half {
            let a = p as f64 * scale * theta.powf(-2.0 * i as f64 / head_dim as f64);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (ctx, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (ctx, half), &Device::Cpu)?,
    ))
}

impl CandleGemma3 {
    /// Loads a `gemma3` GGUF with candle (weights read into memory; the token embedding
    /// dequantized to f32 for lookups, as candle-transformers does), with a context of
    /// `context_length` tokens (capped at the model's) and `threads` CPU threads (0 = all).
    pub fn open(path: impl AsRef<Path>, context_length: usize, threads: usize) -> LlmResult<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let ct = gguf_file::Content::read(&mut file).map_err(candle_err)?;
        let dev = Device::Cpu;
        let md = |k: &str| -> LlmResult<&gguf_file::Value> {
            ct.metadata
                .get(&format!("gemma3.{k}"))
                .ok_or_else(|| LlmError::Metadata {
                    key: format!("gemma3.{k}"),
                    reason: "missing".into(),
                })
        };
        let u = |k: &str| -> LlmResult<usize> { Ok(md(k)?.to_u32().map_err(candle_err)? as usize) };
        let f =
            |k: &str| -> Option<f64> { md(k).ok().and_then(|v| v.to_f32().ok()).map(f64::from) };
        let n_layer = u("block_count")?;
        let dim = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_kv_head = u("attention.head_count_kv")?;
        let head_dim = u("attention.key_length")?;
        let eps = f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6) as f32;
        let window = u("attention.sliding_window").ok();
        let period = u("attention.sliding_window_pattern").unwrap_or(6);
        let ctx = context_length.clamp(1, u("context_length")?);
        let scale = f("rope.scaling.factor").map_or(1.0, |s| 1.0 / s);
        let rope_global = rope_tables(
            ctx,
            head_dim,
            f("rope.freq_base").unwrap_or(1_000_000.0),
            scale,
        )
        .map_err(candle_err)?;
        let rope_local = rope_tables(
            ctx,
            head_dim,
            f("rope.freq_base_swa").unwrap_or(10_000.0),
            1.0,
        )
        .map_err(candle_err)?;
        let mut q = |name: &str| -> LlmResult<QMatMul> {
            let t = ct.tensor(&mut file, name, &dev).map_err(candle_err)?;
            QMatMul::from_qtensor(t).map_err(candle_err)
        };
        let mut layers = Vec::with_capacity(n_layer);
        for l in 0..n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            layers.push(Layer {
                wq: q(&n("attn_q"))?,
                wk: q(&n("attn_k"))?,
                wv: q(&n("attn_v"))?,
                wo: q(&n("attn_output"))?,
                gate: q(&n("ffn_gate"))?,
                up: q(&n("ffn_up"))?,
                down: q(&n("ffn_down"))?,
                q_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                k_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                attn_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                post_attn_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                ffn_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                post_ffn_norm: Tensor::zeros(1, DType::F32, &dev).map_err(candle_err)?,
                window: window.filter(|_| l % period < period - 1),
                cache: None,
            });
        }
        let output_name = if ct.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let output = q(output_name)?;
        let mut vecf = |name: &str| -> LlmResult<Tensor> {
            ct.tensor(&mut file, name, &dev)
                .and_then(|t| t.dequantize(&dev))
                .map_err(candle_err)
        };
        for (l, layer) in layers.iter_mut().enumerate() {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            layer.q_norm = vecf(&n("attn_q_norm"))?;
            layer.k_norm = vecf(&n("attn_k_norm"))?;
            layer.attn_norm = vecf(&n("attn_norm"))?;
            layer.post_attn_norm = vecf(&n("post_attention_norm"))?;
            layer.ffn_norm = vecf(&n("ffn_norm"))?;
            layer.post_ffn_norm = vecf(&n("post_ffw_norm"))?;
        }
        let norm = vecf("output_norm.weight")?;
        let embd = vecf("token_embd.weight")?;
        let vocab = embd.dims()[0];
        let pool = crate::engine_pool(threads)?;
        Ok(Self {
            embd,
            layers,
            norm,
            output,
            dim,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            // llama.cpp (after gemma_pytorch): the 27B model scales by dim / heads.
            attn_scale: if n_layer == 62 {
                1.0 / ((dim / n_head) as f64).sqrt()
            } else {
                1.0 / (head_dim as f64).sqrt()
            },
            final_softcap: f("final_logit_softcapping"),
            rope_global,
            rope_local,
            vocab,
            ctx,
            history: Vec::new(),
            logits: Vec::new(),
            pool: Some(pool),
        })
    }

    /// Hidden states of `tokens` at positions `pos..` -> logits after every one of them
    /// (`[tokens, vocab]`).
    fn run(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let dev = Device::Cpu;
        let t = tokens.len();
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        let ids = Tensor::new(tokens, &dev)?;
        let mut x = (self.embd.index_select(&ids, 0)? * (self.dim as f64).sqrt())?.unsqueeze(0)?;
        for layer in &mut self.layers {
            let (cos, sin) = match layer.window {
                Some(_) => &self.rope_local,
                None => &self.rope_global,
            };
            let (cos, sin) = (cos.narrow(0, pos, t)?, sin.narrow(0, pos, t)?);
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps)?;
            let q = layer
                .wq
                .forward(&h)?
                .reshape((1, t, nh, hd))?
                .transpose(1, 2)?;
            let k = layer
                .wk
                .forward(&h)?
                .reshape((1, t, nkv, hd))?
                .transpose(1, 2)?;
            let v = layer
                .wv
                .forward(&h)?
                .reshape((1, t, nkv, hd))?
                .transpose(1, 2)?;
            let q = candle_nn::ops::rms_norm(&q.contiguous()?, &layer.q_norm, self.eps)?;
            let k = candle_nn::ops::rms_norm(&k.contiguous()?, &layer.k_norm, self.eps)?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            let (k, v) = match &layer.cache {
                Some((kc, vc)) if pos > 0 => (
                    Tensor::cat(&[kc, &k], 2)?.contiguous()?,
                    Tensor::cat(&[vc, &v], 2)?.contiguous()?,
                ),
                _ => (k.contiguous()?, v.contiguous()?),
            };
            layer.cache = Some((k.clone(), v.clone()));
            let total = pos + t;
            let k = candle_transformers::utils::repeat_kv(k, nh / nkv)?;
            let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?;
            let mut att = (q.matmul(&k.t()?)? * self.attn_scale)?;
            // Query i (position pos + i) sees key j when j <= pos + i and, on a sliding
            // layer, pos + i - j < window.
            let masked =
                |i: usize, j: usize| j > pos + i || layer.window.is_some_and(|w| pos + i - j >= w);
            if (0..t).any(|i| (0..total).any(|j| masked(i, j))) {
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| {
                        (0..total).map(move |j| if masked(i, j) { f32::NEG_INFINITY } else { 0.0 })
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (t, total), &dev)?;
                att = att.broadcast_add(&mask)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let o = att.matmul(&v)?.transpose(1, 2)?.reshape((1, t, nh * hd))?;
            let o = layer.wo.forward(&o)?;
            let o = candle_nn::ops::rms_norm(&o, &layer.post_attn_norm, self.eps)?;
            x = (x + o)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.eps)?;
            let g = layer.gate.forward(&h)?.gelu()?;
            let f = layer.down.forward(&(g * layer.up.forward(&h)?)?)?;
            let f = candle_nn::ops::rms_norm(&f, &layer.post_ffn_norm, self.eps)?;
            x = (x + f)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        let mut logits = self.output.forward(&x)?.squeeze(0)?;
        if let Some(c) = self.final_softcap {
            logits = ((logits / c)?.tanh()? * c)?;
        }
        Ok(logits)
    }

    fn feed(&mut self, tokens: &[u32]) -> LlmResult<Tensor> {
        edgeai_llm::engine::check_tokens(tokens, self.history.len(), self.ctx, self.vocab)?;
        let pos = self.history.len();
        let pool = self.pool.take().ok_or_else(|| LlmError::Engine {
            engine: "candle".into(),
            reason: "thread pool lost by an earlier panic".into(),
        })?;
        let r = pool.install(|| self.run(tokens, pos));
        self.pool = Some(pool);
        let logits = r.map_err(candle_err)?;
        self.history.extend_from_slice(tokens);
        Ok(logits)
    }
}

impl LanguageModel for CandleGemma3 {
    fn name(&self) -> &str {
        "candle"
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn context_length(&self) -> usize {
        self.ctx
    }

    fn position(&self) -> usize {
        self.history.len()
    }

    fn reset(&mut self) {
        for l in &mut self.layers {
            l.cache = None;
        }
        self.history.clear();
    }

    fn truncate(&mut self, len: usize) -> LlmResult<()> {
        let n = self.history.len();
        if len > n {
            return Err(LlmError::InvalidArgument(format!(
                "truncate to {len} tokens, only {n} present"
            )));
        }
        if len < n {
            for l in &mut self.layers {
                if let Some((k, v)) = l.cache.take() {
                    if len > 0 {
                        let cut = |t: Tensor| t.narrow(2, 0, len).and_then(|t| t.contiguous());
                        l.cache = Some((cut(k).map_err(candle_err)?, cut(v).map_err(candle_err)?));
                    }
                }
            }
            self.history.truncate(len);
        }
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> LlmResult<&[f32]> {
        let logits = self.feed(tokens)?;
        let last = logits
            .get(tokens.len() - 1)
            .and_then(|r| r.to_vec1::<f32>())
            .map_err(candle_err)?;
        self.logits = last;
        Ok(&self.logits)
    }

    fn forward_all(&mut self, tokens: &[u32]) -> LlmResult<Vec<f32>> {
        let logits = self.feed(tokens)?;
        logits
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(candle_err)
    }
}
