//! The Llama-family decoder on `edgeai-core`'s quantized kernels.
//!
//! - Weights stay in the GGUF memory map; each matrix is a [`QMatrix`] view. Where the kernel
//!   path has packed kernels (every SIMD path: AVX2, AVX-VNNI, AVX-512 VNNI, NEON, dotprod,
//!   i8mm) the matrices are copied once into the row-interleaved [`PackedMatrix`] layout at
//!   load and their map pages released ([`Packing`] in the options decides).
//! - Token embedding: one row of `token_embd.weight` dequantized per token.
//! - RMSNorm, RoPE in llama.cpp's "normal" layout: GGUF stores Q/K rows permuted so that the
//!   rotation acts on consecutive pairs `(x[2i], x[2i+1])` with angle `pos * theta^(-2i/d)`.
//! - Grouped-query attention (query head `h` reads KV head `h / (n_head / n_kv_head)`),
//!   parallel over heads; SwiGLU FFN; output projection tied to the embedding when
//!   `output.weight` is absent.
//! - [`LlamaEngine`] holds an f32 KV cache preallocated for its context length and every
//!   activation buffer, so decoding allocates nothing per token. Prompts are processed in
//!   batches with [`QMatrix::matmul`] / [`PackedMatrix::matmul`]; single tokens with
//!   [`QMatrix::matvec`] / [`PackedMatrix::matvec`].

use std::path::Path;
use std::sync::Arc;

use edgeai_core::quant::{self, GgmlType, PackedMatrix, QMatrix, Scratch};
use rayon::prelude::*;

use crate::engine::LanguageModel;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Embedding width.
    pub dim: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// FFN hidden width.
    pub ffn_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Training context length.
    pub context_length: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// Rotated dimensions per head.
    pub rope_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
}

impl LlamaConfig {
    /// Reads the `{arch}.*` keys of a llama-architecture GGUF.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.get_str("general.architecture").unwrap_or("");
        if arch != "llama" {
            return Err(Error::Unsupported(format!(
                "architecture `{arch}` (only `llama` is implemented)"
            )));
        }
        let u = |k: &str| -> Result<usize> {
            let v = g.require_u64(&format!("llama.{k}"))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < 1 << 24)
                .ok_or_else(|| Error::Metadata {
                    key: format!("llama.{k}"),
                    reason: format!("{v} is out of range"),
                })
        };
        let dim = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_kv_head = match g.get("llama.attention.head_count_kv") {
            Some(_) => u("attention.head_count_kv")?,
            None => n_head,
        };
        if dim % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(Error::Unsupported(format!(
                "dim {dim}, {n_head} heads, {n_kv_head} KV heads do not divide"
            )));
        }
        let head_dim = dim / n_head;
        let rope_dim = match g.get("llama.rope.dimension_count") {
            Some(_) => u("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::Unsupported(format!(
                "rope dimension {rope_dim} with head dim {head_dim}"
            )));
        }
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::Unsupported("tensor `token_embd.weight` missing".into()))?;
        let vocab = embd.matrix_shape().0;
        Ok(Self {
            n_layer: u("block_count")?,
            dim,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            vocab,
            context_length: u("context_length")?,
            rope_theta: g.opt_f64("llama.rope.freq_base")?.unwrap_or(10_000.0) as f32,
            rope_dim,
            rms_eps: g
                .opt_f64("llama.attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5) as f32,
        })
    }

    /// Width of the K (and V) projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Bytes of an f32 KV cache for `ctx` tokens.
    pub fn kv_cache_bytes(&self, ctx: usize) -> usize {
        2 * self.n_layer * ctx * self.kv_dim() * 4
    }
}

/// A weight matrix: a range of the GGUF's bytes.
#[derive(Clone, Copy, Debug)]
struct QWeight {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    start: usize,
    len: usize,
    /// Index into `LlamaModel::packed` when this matrix was repacked.
    packed: Option<usize>,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QWeight,
    wk: QWeight,
    wv: QWeight,
    wo: QWeight,
    ffn_norm: Vec<f32>,
    w_gate: QWeight,
    w_up: QWeight,
    w_down: QWeight,
}

/// Loaded weights (shared, read-only): create any number of [`LlamaEngine`]s from one.
pub struct LlamaModel {
    gguf: GgufFile,
    cfg: LlamaConfig,
    layers: Vec<Layer>,
    tok_embd: QWeight,
    output_norm: Vec<f32>,
    output: QWeight,
    /// Row-interleaved copies of the matrices (see [`LlamaModel::from_gguf_with`]).
    packed: Vec<PackedMatrix>,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel")
            .field("origin", &self.gguf.origin())
            .field("config", &self.cfg)
            .finish()
    }
}

impl LlamaModel {
    /// Memory-maps and loads a llama GGUF (repacking its matrices where that pays off:
    /// [`Packing::Auto`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        Self::open_with(path, Packing::Auto)
    }

    /// Memory-maps and loads a llama GGUF, repacking its matrices as `packing` says.
    pub fn open_with(path: impl AsRef<Path>, packing: Packing) -> Result<Arc<Self>> {
        Ok(Arc::new(Self::from_gguf_with(
            GgufFile::open(path)?,
            packing,
        )?))
    }

    /// Loads from a parsed GGUF (takes ownership of its map), repacking where that pays off
    /// ([`Packing::Auto`]).
    pub fn from_gguf(gguf: GgufFile) -> Result<Self> {
        Self::from_gguf_with(gguf, Packing::Auto)
    }

    /// Whether the matrices were repacked at load (see [`LlamaModel::from_gguf_with`]).
    pub fn is_packed(&self) -> bool {
        !self.packed.is_empty()
    }

    /// Loads from a parsed GGUF. Where `packing` packs ([`Packing::packs`]), every matrix that
    /// [`PackedMatrix::supports`] is copied once into the row-interleaved layout (faster
    /// matrix-vector products on every SIMD path, see BENCHMARKS.md; the NEON kernels are
    /// verified under qemu but not yet timed on ARM; on the scalar path the packed form runs
    /// its slower scalar twin, so leave it off there) and the map's pages of those matrices
    /// are released, so resident memory stays about the file size. Otherwise the weights
    /// stay in the map, uncopied.
    pub fn from_gguf_with(gguf: GgufFile, packing: Packing) -> Result<Self> {
        let pack = packing.packs();
        let cfg = LlamaConfig::from_gguf(&gguf)?;
        let mat = |name: &str, rows: usize, cols: usize| -> Result<QWeight> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| Error::Unsupported(format!("tensor `{name}` missing")))?;
            if t.matrix_shape() != (rows, cols) || t.dims.len() != 2 {
                return Err(Error::Unsupported(format!(
                    "tensor `{name}` has dims {:?}, expected [{cols}, {rows}]",
                    t.dims
                )));
            }
            let start = (gguf.data_offset() + t.offset) as usize;
            // Validates the byte length once; calls rebuild the view cheaply.
            QMatrix::new(t.ty, rows, cols, gguf.tensor_data(t))?;
            Ok(QWeight {
                ty: t.ty,
                rows,
                cols,
                start,
                len: t.size,
                packed: None,
            })
        };
        let vec = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = gguf
                .tensor(name)
                .ok_or_else(|| Error::Unsupported(format!("tensor `{name}` missing")))?;
            if t.elements() != n as u64 {
                return Err(Error::Unsupported(format!(
                    "tensor `{name}` has dims {:?}, expected [{n}]",
                    t.dims
                )));
            }
            let m = QMatrix::new(t.ty, 1, n, gguf.tensor_data(t))?;
            let mut out = vec![0f32; n];
            m.dequantize_row(0, &mut out)?;
            Ok(out)
        };
        let (d, kv, f) = (cfg.dim, cfg.kv_dim(), cfg.ffn_dim);
        // `block_count` comes from the file: reserve no more layers than it has tensors, so a
        // header claiming millions of layers fails on the first missing one, cheaply.
        let mut layers = Vec::with_capacity(cfg.n_layer.min(gguf.tensors().len()));
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            layers.push(Layer {
                attn_norm: vec(&n("attn_norm"), d)?,
                wq: mat(&n("attn_q"), d, d)?,
                wk: mat(&n("attn_k"), kv, d)?,
                wv: mat(&n("attn_v"), kv, d)?,
                wo: mat(&n("attn_output"), d, d)?,
                ffn_norm: vec(&n("ffn_norm"), d)?,
                w_gate: mat(&n("ffn_gate"), f, d)?,
                w_up: mat(&n("ffn_up"), f, d)?,
                w_down: mat(&n("ffn_down"), d, f)?,
            });
        }
        let tok_embd = mat("token_embd.weight", cfg.vocab, d)?;
        let output = if gguf.tensor("output.weight").is_some() {
            mat("output.weight", cfg.vocab, d)?
        } else {
            tok_embd
        };
        let output_norm = vec("output_norm.weight", d)?;
        let mut model = Self {
            gguf,
            cfg,
            layers,
            tok_embd,
            output_norm,
            output,
            packed: Vec::new(),
        };
        if pack {
            model.pack()?;
        }
        let (gguf, cfg) = (&model.gguf, &model.cfg);
        tracing::info!(
            origin = gguf.origin(),
            layers = cfg.n_layer,
            dim = cfg.dim,
            vocab = cfg.vocab,
            tied = gguf.tensor("output.weight").is_none(),
            packed = model.packed.len(),
            "llama model loaded"
        );
        Ok(model)
    }

    /// Repacks every supported matrix and releases its pages of the map (the token
    /// embedding's too when it is only the tied output: lookups fault the few rows they read
    /// back in).
    fn pack(&mut self) -> Result<()> {
        let mut packed = Vec::new();
        let mut one = |w: &mut QWeight, gguf: &GgufFile| -> Result<()> {
            if w.packed.is_none() && PackedMatrix::supports(w.ty, w.rows, w.cols) {
                let bytes = gguf
                    .bytes()
                    .get(w.start..w.start + w.len)
                    .ok_or_else(|| Error::Unsupported("weight outside the file".into()))?;
                packed.push(PackedMatrix::pack(&QMatrix::new(
                    w.ty, w.rows, w.cols, bytes,
                )?)?);
                w.packed = Some(packed.len() - 1);
                gguf.release_pages(w.start, w.len);
            }
            Ok(())
        };
        for l in &mut self.layers {
            for w in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.w_gate,
                &mut l.w_up,
                &mut l.w_down,
            ] {
                one(w, &self.gguf)?;
            }
        }
        one(&mut self.output, &self.gguf)?;
        self.packed = packed;
        Ok(())
    }

    /// `y = W x` for `n` rows of `x`, on the packed copy when there is one.
    fn matmul(
        &self,
        w: &QWeight,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        sc: &mut Scratch,
    ) -> Result<()> {
        match w.packed.and_then(|i| self.packed.get(i)) {
            Some(p) => p.matmul(x, n, y, sc)?,
            None => {
                let m = self.m(w)?;
                if n == 1 {
                    m.matvec(x, y, sc)?;
                } else {
                    m.matmul(x, n, y, sc)?;
                }
            }
        }
        Ok(())
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The underlying GGUF (metadata, tokenizer).
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    fn m(&self, w: &QWeight) -> Result<QMatrix<'_>> {
        let bytes = self
            .gguf
            .bytes()
            .get(w.start..w.start + w.len)
            .ok_or_else(|| Error::Unsupported("weight outside the file".into()))?;
        Ok(QMatrix::new(w.ty, w.rows, w.cols, bytes)?)
    }
}

/// Whether a model's weight matrices are repacked into the row-interleaved
/// [`PackedMatrix`] layout at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Packing {
    /// Pack where the current kernel path has packed kernels
    /// ([`quant::packed_kernels_available`]): every SIMD path.
    #[default]
    Auto,
    /// Keep every matrix in the GGUF map (row-major kernels).
    Never,
    /// Pack every supported matrix, even where only the scalar twin runs them.
    Always,
}

impl Packing {
    /// Whether this policy packs on the current kernel path.
    pub fn packs(self) -> bool {
        match self {
            Self::Auto => quant::packed_kernels_available(),
            Self::Never => false,
            Self::Always => true,
        }
    }

    /// Parses a setting as the CLI's `EDGEAI_PACK` takes it: `auto`; `0`, `never`, `off`;
    /// `1`, `always`, `on` (case-insensitive).
    ///
    /// ```
    /// use edgeai_llm::Packing;
    /// assert_eq!(Packing::from_name("0"), Some(Packing::Never));
    /// assert_eq!(Packing::from_name("Always"), Some(Packing::Always));
    /// assert_eq!(Packing::from_name("sometimes"), None);
    /// ```
    pub fn from_name(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "0" | "never" | "off" => Some(Self::Never),
            "1" | "always" | "on" => Some(Self::Always),
            _ => None,
        }
    }
}

/// [`Packing::from_name`], with an error that lists the accepted settings.
///
/// ```
/// let p: edgeai_llm::Packing = "auto".parse().unwrap();
/// assert_eq!(p, edgeai_llm::Packing::Auto);
/// let e = "sometimes".parse::<edgeai_llm::Packing>().unwrap_err();
/// assert!(e.to_string().contains("`sometimes`"));
/// ```
impl std::str::FromStr for Packing {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "packing `{s}`: expected auto, 0 (never, off) or 1 (always, on)"
            ))
        })
    }
}

/// Options of a [`LlamaEngine`] (and of the load in [`crate::Llm::open`]).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Context length of the KV cache (capped at the model's training context).
    pub context_length: usize,
    /// Most prompt tokens processed per batch.
    pub batch: usize,
    /// Whether [`crate::Llm::open`] repacks the weights at load.
    pub packing: Packing,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            context_length: 2048,
            batch: 64,
            packing: Packing::Auto,
        }
    }
}

/// RMSNorm of `x` times `w` into `out`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for ((o, &xv), &wv) in out.iter_mut().zip(x).zip(w) {
        *o = xv * inv * wv;
    }
}

/// Rotates consecutive pairs of every head of `x` (`n_heads * head_dim`) by the angles whose
/// cosines / sines are `cos` / `sin` (`rope_dim / 2` each) — llama.cpp's "normal" RoPE.
pub fn rope_normal(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

/// `cos` / `sin` tables, `ctx` rows of `rope_dim / 2`.
fn rope_tables(ctx: usize, rope_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = rope_dim / 2;
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        for i in 0..half {
            let freq = (theta as f64).powf(-2.0 * i as f64 / rope_dim as f64);
            let a = p as f64 * freq;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Activation buffers for up to `batch` tokens.
struct Buffers {
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att_heads: Vec<f32>,
    scores: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    logits: Vec<f32>,
}

/// The native engine: a model plus its KV cache and buffers.
pub struct LlamaEngine {
    model: Arc<LlamaModel>,
    ctx: usize,
    batch: usize,
    pos: usize,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    buf: Buffers,
    scratch: Scratch,
    pool: Option<(usize, rayon::ThreadPool)>,
}

impl std::fmt::Debug for LlamaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaEngine")
            .field("ctx", &self.ctx)
            .field("pos", &self.pos)
            .finish()
    }
}

impl LlamaEngine {
    /// An engine with its cache and buffers preallocated.
    pub fn new(model: Arc<LlamaModel>, opts: &EngineOptions) -> Result<Self> {
        let c = model.config().clone();
        if opts.context_length == 0 || opts.batch == 0 {
            return Err(Error::InvalidArgument(
                "context length and batch must be > 0".into(),
            ));
        }
        let ctx = opts.context_length.min(c.context_length);
        let batch = opts.batch.min(ctx);
        let kv = ctx * c.n_layer * c.kv_dim();
        let (rope_cos, rope_sin) = rope_tables(ctx, c.rope_dim, c.rope_theta);
        tracing::debug!(
            ctx,
            batch,
            kv_mib = c.kv_cache_bytes(ctx) >> 20,
            "llama engine"
        );
        Ok(Self {
            ctx,
            batch,
            pos: 0,
            k_cache: vec![0.0; kv],
            v_cache: vec![0.0; kv],
            rope_cos,
            rope_sin,
            buf: Buffers {
                x: vec![0.0; batch * c.dim],
                xb: vec![0.0; batch * c.dim],
                xb2: vec![0.0; batch * c.dim],
                q: vec![0.0; batch * c.dim],
                k: vec![0.0; batch * c.kv_dim()],
                v: vec![0.0; batch * c.kv_dim()],
                att_heads: vec![0.0; batch * c.dim],
                scores: vec![0.0; c.n_head * ctx],
                hb: vec![0.0; batch * c.ffn_dim],
                hb2: vec![0.0; batch * c.ffn_dim],
                logits: vec![0.0; c.vocab],
            },
            scratch: Scratch::new(),
            pool: None,
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<LlamaModel> {
        &self.model
    }

    fn check(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("forward: no tokens".into()));
        }
        let needed = self.pos + tokens.len();
        if needed > self.ctx {
            return Err(Error::ContextOverflow {
                needed,
                capacity: self.ctx,
            });
        }
        let vocab = self.model.cfg.vocab;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id, vocab });
        }
        Ok(())
    }

    fn ensure_pool(&mut self) {
        let n = quant::num_threads();
        if n <= 1 {
            self.pool = None;
            return;
        }
        if self.pool.as_ref().is_some_and(|(size, _)| *size == n) {
            return;
        }
        self.pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("edgeai-attn-{i}"))
            .build()
            .ok()
            .map(|p| (n, p));
    }

    /// Runs the blocks on `tokens` (at most `batch`), leaving the final hidden states in
    /// `buf.x`.
    fn run_batch(&mut self, tokens: &[u32]) -> Result<()> {
        let model = Arc::clone(&self.model);
        let c = &model.cfg;
        let n = tokens.len();
        let (dim, kv_dim, hd, ffn) = (c.dim, c.kv_dim(), c.head_dim, c.ffn_dim);
        let pos0 = self.pos;
        let half = c.rope_dim / 2;
        let group = c.n_head / c.n_kv_head;
        let scale = 1.0 / (hd as f32).sqrt();
        let ctx = self.ctx;
        let b = &mut self.buf;
        let sc = &mut self.scratch;

        let embd = model.m(&model.tok_embd)?;
        for (i, &t) in tokens.iter().enumerate() {
            embd.dequantize_row(t as usize, &mut b.x[i * dim..(i + 1) * dim])?;
        }
        let mm = |w: &QWeight, x: &[f32], y: &mut [f32], sc: &mut Scratch| -> Result<()> {
            model.matmul(w, x, n, y, sc)
        };

        for (l, layer) in model.layers.iter().enumerate() {
            // Attention.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                rmsnorm(&mut b.xb[r.clone()], &b.x[r], &layer.attn_norm, c.rms_eps);
            }
            let xb = &b.xb[..n * dim];
            mm(&layer.wq, xb, &mut b.q[..n * dim], sc)?;
            mm(&layer.wk, xb, &mut b.k[..n * kv_dim], sc)?;
            mm(&layer.wv, xb, &mut b.v[..n * kv_dim], sc)?;
            let base = l * ctx * kv_dim;
            for i in 0..n {
                let p = pos0 + i;
                let (cos, sin) = (
                    &self.rope_cos[p * half..(p + 1) * half],
                    &self.rope_sin[p * half..(p + 1) * half],
                );
                rope_normal(&mut b.q[i * dim..(i + 1) * dim], hd, cos, sin);
                rope_normal(&mut b.k[i * kv_dim..(i + 1) * kv_dim], hd, cos, sin);
                let dst = base + p * kv_dim;
                self.k_cache[dst..dst + kv_dim].copy_from_slice(&b.k[i * kv_dim..(i + 1) * kv_dim]);
                self.v_cache[dst..dst + kv_dim].copy_from_slice(&b.v[i * kv_dim..(i + 1) * kv_dim]);
            }
            let kc = &self.k_cache[base..base + ctx * kv_dim];
            let vc = &self.v_cache[base..base + ctx * kv_dim];
            let q = &b.q[..n * dim];
            // One task per head: att_heads is head-major [head][token][hd].
            let head_task = |h: usize, out: &mut [f32], scores: &mut [f32]| {
                let kvo = (h / group) * hd;
                for i in 0..n {
                    let p = pos0 + i;
                    let qh = &q[i * dim + h * hd..i * dim + (h + 1) * hd];
                    let s = &mut scores[..=p];
                    let mut max = f32::NEG_INFINITY;
                    for (t, sv) in s.iter_mut().enumerate() {
                        let kt = &kc[t * kv_dim + kvo..t * kv_dim + kvo + hd];
                        let d: f32 = qh.iter().zip(kt).map(|(a, b)| a * b).sum();
                        *sv = d * scale;
                        max = max.max(*sv);
                    }
                    let mut sum = 0.0;
                    for sv in s.iter_mut() {
                        *sv = (*sv - max).exp();
                        sum += *sv;
                    }
                    let inv = 1.0 / sum;
                    let o = &mut out[i * hd..(i + 1) * hd];
                    o.fill(0.0);
                    for (t, &w) in s.iter().enumerate() {
                        let vt = &vc[t * kv_dim + kvo..t * kv_dim + kvo + hd];
                        let w = w * inv;
                        for (ov, &vv) in o.iter_mut().zip(vt) {
                            *ov += w * vv;
                        }
                    }
                }
            };
            let att = &mut b.att_heads[..c.n_head * n * hd];
            let scores = &mut b.scores[..c.n_head * ctx];
            let work = n * (pos0 + n) * dim;
            match &self.pool {
                // Waking the pool costs tens of microseconds: decode-sized attention (one
                // token over a short context) runs faster on this thread.
                Some((_, pool)) if work >= 1 << 20 => pool.install(|| {
                    att.par_chunks_mut(n * hd)
                        .zip(scores.par_chunks_mut(ctx))
                        .enumerate()
                        .for_each(|(h, (o, s))| head_task(h, o, s))
                }),
                _ => att
                    .chunks_mut(n * hd)
                    .zip(scores.chunks_mut(ctx))
                    .enumerate()
                    .for_each(|(h, (o, s))| head_task(h, o, s)),
            }
            // Back to token-major in xb.
            for h in 0..c.n_head {
                for i in 0..n {
                    b.xb[i * dim + h * hd..i * dim + (h + 1) * hd]
                        .copy_from_slice(&att[(h * n + i) * hd..(h * n + i + 1) * hd]);
                }
            }
            mm(&layer.wo, &b.xb[..n * dim], &mut b.xb2[..n * dim], sc)?;
            for (x, &o) in b.x[..n * dim].iter_mut().zip(&b.xb2[..n * dim]) {
                *x += o;
            }
            // FFN.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                rmsnorm(&mut b.xb[r.clone()], &b.x[r], &layer.ffn_norm, c.rms_eps);
            }
            let xb = &b.xb[..n * dim];
            mm(&layer.w_gate, xb, &mut b.hb[..n * ffn], sc)?;
            mm(&layer.w_up, xb, &mut b.hb2[..n * ffn], sc)?;
            for (g, &u) in b.hb[..n * ffn].iter_mut().zip(&b.hb2[..n * ffn]) {
                *g = silu(*g) * u;
            }
            mm(&layer.w_down, &b.hb[..n * ffn], &mut b.xb2[..n * dim], sc)?;
            for (x, &o) in b.x[..n * dim].iter_mut().zip(&b.xb2[..n * dim]) {
                *x += o;
            }
        }
        self.pos += n;
        Ok(())
    }

    /// Final norm + output projection of hidden row `i` of `buf.x` into `out`.
    fn logits_of_row(&mut self, i: usize, out: &mut [f32]) -> Result<()> {
        let c = &self.model.cfg;
        let dim = c.dim;
        let x = &self.buf.x[i * dim..(i + 1) * dim];
        let xb = &mut self.buf.xb[..dim];
        rmsnorm(xb, x, &self.model.output_norm, c.rms_eps);
        self.model
            .matmul(&self.model.output, xb, 1, out, &mut self.scratch)?;
        Ok(())
    }
}

impl LanguageModel for LlamaEngine {
    fn name(&self) -> &str {
        "edgeai"
    }

    fn vocab_size(&self) -> usize {
        self.model.cfg.vocab
    }

    fn context_length(&self) -> usize {
        self.ctx
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn reset(&mut self) {
        self.pos = 0;
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.pos {
            return Err(Error::InvalidArgument(format!(
                "truncate to {len} tokens, only {} present",
                self.pos
            )));
        }
        self.pos = len;
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.check(tokens)?;
        self.ensure_pool();
        let mut last = 0;
        for chunk in tokens.chunks(self.batch) {
            self.run_batch(chunk)?;
            last = chunk.len() - 1;
        }
        let mut logits = std::mem::take(&mut self.buf.logits);
        let r = self.logits_of_row(last, &mut logits);
        self.buf.logits = logits;
        r?;
        Ok(&self.buf.logits)
    }

    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check(tokens)?;
        self.ensure_pool();
        let vocab = self.model.cfg.vocab;
        let mut out = vec![0f32; tokens.len() * vocab];
        let mut done = 0;
        for chunk in tokens.chunks(self.batch) {
            self.run_batch(chunk)?;
            for i in 0..chunk.len() {
                let row = done + i;
                self.logits_of_row(i, &mut out[row * vocab..(row + 1) * vocab])?;
            }
            done += chunk.len();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_consecutive_pairs() {
        let hd = 4;
        let mut x = vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0];
        let (cos, sin) = rope_tables(3, hd, 10_000.0);
        // Position 2: angles 2 * 1 and 2 * 10000^(-1/2) = 0.02.
        let p = 2;
        rope_normal(&mut x, hd, &cos[p * 2..p * 2 + 2], &sin[p * 2..p * 2 + 2]);
        let (a0, a1) = (2.0f32, 0.02f32);
        let want = [
            a0.cos(),
            a0.sin(),
            -a1.sin(),
            a1.cos(),
            2.0 * a0.cos(),
            2.0 * a0.sin(),
            -2.0 * a1.sin(),
            2.0 * a1.cos(),
        ];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{x:?} vs {want:?}");
        }
    }

    #[test]
    fn rope_scores_depend_on_relative_position_only() {
        let hd = 8;
        let (cos, sin) = rope_tables(64, hd, 10_000.0);
        let q0: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let k0: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.91).cos()).collect();
        let at = |v: &[f32], p: usize| {
            let mut v = v.to_vec();
            rope_normal(&mut v, hd, &cos[p * 4..p * 4 + 4], &sin[p * 4..p * 4 + 4]);
            v
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let s1 = dot(&at(&q0, 10), &at(&k0, 7));
        let s2 = dot(&at(&q0, 40), &at(&k0, 37));
        assert!((s1 - s2).abs() < 1e-4, "{s1} vs {s2}");
        let s3 = dot(&at(&q0, 40), &at(&k0, 30));
        assert!((s1 - s3).abs() > 1e-3);
    }

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0];
        let mut o = [0.0; 2];
        rmsnorm(&mut o, &x, &[1.0, 2.0], 0.0);
        let rms = (12.5f32).sqrt();
        assert!((o[0] - 3.0 / rms).abs() < 1e-6);
        assert!((o[1] + 8.0 / rms).abs() < 1e-6);
    }
}

#[cfg(test)]
mod synthetic {
    //! A tiny random llama written with the GGUF writer: engine mechanics without a real model.
    use super::*;
    use crate::gguf::{writer::GgufWriter, Value};

    const DIM: usize = 64;
    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const FFN: usize = 96;
    const VOCAB: usize = 40;
    const LAYERS: usize = 2;

    fn rand_bytes(n: usize, seed: &mut u64, scale: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let u = (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                (u * scale).to_le_bytes()
            })
            .collect()
    }

    fn model(tied: bool) -> Arc<LlamaModel> {
        let mut s = 0x1234_5678_9abc_def1u64;
        let u32v = |v: usize| Value::U32(v as u32);
        let mut w = GgufWriter::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("llama.block_count", u32v(LAYERS))
            .kv("llama.context_length", u32v(32))
            .kv("llama.embedding_length", u32v(DIM))
            .kv("llama.feed_forward_length", u32v(FFN))
            .kv("llama.attention.head_count", u32v(HEADS))
            .kv("llama.attention.head_count_kv", u32v(KV_HEADS))
            .kv("llama.rope.freq_base", Value::F32(10_000.0))
            .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
        let f = GgmlType::F32;
        let kv = KV_HEADS * DIM / HEADS;
        let ones: Vec<u8> = (0..DIM).flat_map(|_| 1f32.to_le_bytes()).collect();
        w = w.tensor(
            "token_embd.weight",
            &[DIM as u64, VOCAB as u64],
            f,
            rand_bytes(DIM * VOCAB, &mut s, 2.0),
        );
        for l in 0..LAYERS {
            let n = |x: &str| format!("blk.{l}.{x}.weight");
            w = w
                .tensor(&n("attn_norm"), &[DIM as u64], f, ones.clone())
                .tensor(
                    &n("attn_q"),
                    &[DIM as u64, DIM as u64],
                    f,
                    rand_bytes(DIM * DIM, &mut s, 0.5),
                )
                .tensor(
                    &n("attn_k"),
                    &[DIM as u64, kv as u64],
                    f,
                    rand_bytes(DIM * kv, &mut s, 0.5),
                )
                .tensor(
                    &n("attn_v"),
                    &[DIM as u64, kv as u64],
                    f,
                    rand_bytes(DIM * kv, &mut s, 0.5),
                )
                .tensor(
                    &n("attn_output"),
                    &[DIM as u64, DIM as u64],
                    f,
                    rand_bytes(DIM * DIM, &mut s, 0.2),
                )
                .tensor(&n("ffn_norm"), &[DIM as u64], f, ones.clone())
                .tensor(
                    &n("ffn_gate"),
                    &[DIM as u64, FFN as u64],
                    f,
                    rand_bytes(DIM * FFN, &mut s, 0.5),
                )
                .tensor(
                    &n("ffn_up"),
                    &[DIM as u64, FFN as u64],
                    f,
                    rand_bytes(DIM * FFN, &mut s, 0.5),
                )
                .tensor(
                    &n("ffn_down"),
                    &[FFN as u64, DIM as u64],
                    f,
                    rand_bytes(DIM * FFN, &mut s, 0.2),
                );
        }
        w = w.tensor("output_norm.weight", &[DIM as u64], f, ones);
        if !tied {
            w = w.tensor(
                "output.weight",
                &[DIM as u64, VOCAB as u64],
                f,
                rand_bytes(DIM * VOCAB, &mut s, 1.0),
            );
        }
        Arc::new(LlamaModel::from_gguf(GgufFile::from_bytes(w.build()).unwrap()).unwrap())
    }

    fn engine(m: &Arc<LlamaModel>, batch: usize) -> LlamaEngine {
        LlamaEngine::new(
            m.clone(),
            &EngineOptions {
                context_length: 16,
                batch,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn batches_chunks_and_single_tokens_agree() {
        let m = model(false);
        let toks = [3u32, 17, 5, 39, 0, 8, 8, 21, 2, 11];
        let full = engine(&m, 16).forward_all(&toks).unwrap();
        let chunked = engine(&m, 3).forward_all(&toks).unwrap();
        let mut e = engine(&m, 16);
        let mut single = Vec::new();
        for &t in &toks {
            single.extend_from_slice(e.forward(&[t]).unwrap());
        }
        for (name, other) in [("chunked", &chunked), ("single", &single)] {
            let d = full
                .iter()
                .zip(other)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(d < 1e-4, "{name}: {d}");
        }
        // Different positions give different logits (the cache is used).
        assert!(full[..VOCAB] != full[VOCAB..2 * VOCAB]);
    }

    #[test]
    fn truncate_and_reset_reuse_the_cache() {
        let m = model(true);
        let mut e = engine(&m, 4);
        let a = e.forward(&[1, 2, 3, 4, 5]).unwrap().to_vec();
        e.truncate(3).unwrap();
        let b = e.forward(&[4, 5]).unwrap().to_vec();
        assert_eq!(a, b);
        e.reset();
        let c = e.forward(&[1, 2, 3, 4, 5]).unwrap().to_vec();
        assert_eq!(a, c);
        assert!(e.truncate(6).is_err());
    }

    #[test]
    fn errors_instead_of_panics() {
        let m = model(true);
        let mut e = engine(&m, 4);
        assert!(matches!(e.forward(&[]), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            e.forward(&[VOCAB as u32]),
            Err(Error::TokenOutOfRange { .. })
        ));
        e.forward(&[1; 10]).unwrap();
        assert!(matches!(
            e.forward(&[1; 7]),
            Err(Error::ContextOverflow {
                needed: 17,
                capacity: 16
            })
        ));
        assert_eq!(e.position(), 10);
        e.forward(&[1; 6]).unwrap();
        assert!(e.forward(&[1]).is_err());
    }

    #[test]
    fn missing_or_misshapen_tensors_are_errors() {
        let g = GgufWriter::new()
            .kv("general.architecture", Value::String("gpt2".into()))
            .build();
        let e = LlamaModel::from_gguf(GgufFile::from_bytes(g).unwrap()).unwrap_err();
        assert!(e.to_string().contains("architecture `gpt2`"), "{e}");
    }
}
