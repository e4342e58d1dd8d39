//! The native decoder on `edgeai-core`'s quantized kernels: one transformer-block skeleton for
//! every supported architecture ([`Architecture`]: Llama-family and Gemma 3), dispatched from
//! the GGUF's `general.architecture`.
//!
//! - Weights stay in the GGUF memory map; each matrix is a [`QMatrix`] view. Where the kernel
//!   path has packed kernels (every SIMD path: AVX2, AVX-VNNI, AVX-512 VNNI, NEON, dotprod,
//!   i8mm) the matrices are copied once into the row-interleaved [`PackedMatrix`] layout at
//!   load and their map pages released ([`Packing`] in the options decides).
//! - Token embedding: one row of `token_embd.weight` dequantized per token (scaled by
//!   `sqrt(dim)` for Gemma).
//! - RMSNorm. Gemma's `(1 + w)` weight convention needs no code: llama.cpp's converter stores
//!   `1 + w` in the GGUF, so every architecture multiplies by the stored weight.
//! - RoPE: Llama in llama.cpp's "normal" layout (the GGUF stores Q/K rows permuted so that the
//!   rotation acts on consecutive pairs `(x[2i], x[2i+1])`); Gemma in the "NeoX" layout (pairs
//!   `(x[i], x[i + d/2])`), with one base for the global layers and another for the sliding
//!   ones.
//! - Grouped-query attention (query head `h` reads KV head `h / (n_head / n_kv_head)`),
//!   parallel over heads, in one routine for every layer kind: a global layer sees every
//!   earlier position, a sliding layer the last `window` ones (llama.cpp's rule: key `t` is
//!   visible from query `p` when `p - t < window`).
//! - Gemma's extras: per-head RMSNorm of Q and K before RoPE, norms after attention and after
//!   the FFN, GeGLU (gelu-tanh) instead of SwiGLU, final logit soft-capping when the metadata
//!   sets it. Output projection tied to the embedding when `output.weight` is absent.
//! - [`DecoderEngine`] holds an f32 KV cache preallocated for its context length and every
//!   activation buffer, so decoding allocates nothing per token. A sliding layer's cache is a
//!   ring of `window + batch` positions, so a long chat does not grow memory on those layers.
//!   Prompts are processed in batches with [`QMatrix::matmul`] / [`PackedMatrix::matmul`];
//!   single tokens with [`QMatrix::matvec`] / [`PackedMatrix::matvec`].

use std::path::Path;
use std::sync::Arc;

use edgeai_core::half::f16;
use edgeai_core::quant::{
    self, quantize_row_q8_0, vector, BlockQ8_0, GgmlType, PackedMatrix, QMatrix, Scratch, QK,
};

/// Queries per attention task (`vector::scores` reads a key once per four queries).
const QB: usize = 4;
/// Values per parallel chunk of the gated activation.
const GLU_CHUNK: usize = 4096;

thread_local! {
    /// Attention scores of one task (QB queries by the keys they see), per kernel thread.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

use crate::engine::LanguageModel;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// The decoder architectures edgeai runs natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// Llama-family (`general.architecture = llama`: Llama 2/3, SmolLM2, TinyLlama, ...).
    Llama,
    /// Gemma 3 text decoders (`gemma3`).
    Gemma3,
}

impl Architecture {
    /// Every supported architecture, as `general.architecture` names it.
    pub const KNOWN: &'static [&'static str] = &["llama", "gemma3"];

    /// The architecture of a `general.architecture` value; an unknown one is an error that
    /// names it and lists the known ones.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "gemma3" => Ok(Self::Gemma3),
            other => Err(Error::Unsupported(format!(
                "architecture `{other}` (known: {})",
                Self::KNOWN.join(", ")
            ))),
        }
    }

    /// The `general.architecture` name (also the prefix of its metadata keys).
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Consecutive pairs `(x[2i], x[2i+1])` (llama.cpp's "normal"; Llama GGUFs).
    Normal,
    /// Halves `(x[i], x[i + d/2])` (llama.cpp's "NeoX"; Gemma).
    Neox,
}

/// The feed-forward gate's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (SwiGLU; Llama).
    Silu,
    /// `gelu_tanh(gate) * up` (GeGLU; Gemma).
    GeluTanh,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    /// The architecture.
    pub arch: Architecture,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Embedding width.
    pub dim: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head width (of queries, keys and values).
    pub head_dim: usize,
    /// FFN hidden width.
    pub ffn_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Training context length.
    pub context_length: usize,
    /// RoPE base of the global layers.
    pub rope_theta: f32,
    /// RoPE base of the sliding-window layers.
    pub rope_theta_local: f32,
    /// Position scale of the global layers' RoPE (`1 / rope.scaling.factor`; 1 = none).
    pub rope_scale: f32,
    /// Rotated dimensions per head.
    pub rope_dim: usize,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Attention window of the sliding layers (`None`: every layer is global).
    pub sliding_window: Option<usize>,
    /// With a window: layer `l` slides when `l % period < period - 1` (Gemma 3: every sixth
    /// layer is global).
    pub sliding_period: usize,
    /// Factor applied to `q · k`.
    pub attn_scale: f32,
    /// Factor applied to the token embedding (`sqrt(dim)` for Gemma, else 1).
    pub embed_scale: f32,
    /// FFN gate activation.
    pub activation: Activation,
    /// `c * tanh(logit / c)` on the attention scores, when set.
    pub attn_softcap: Option<f32>,
    /// `c * tanh(logit / c)` on the output logits, when set.
    pub final_softcap: Option<f32>,
}

impl DecoderConfig {
    /// Reads the `{arch}.*` keys of a GGUF of a supported architecture.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch_name = g.get_str("general.architecture").unwrap_or("");
        let arch = Architecture::from_name(arch_name)?;
        let p = arch.name();
        let key = |k: &str| format!("{p}.{k}");
        let u = |k: &str| -> Result<usize> {
            let v = g.require_u64(&key(k))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < 1 << 24)
                .ok_or_else(|| Error::Metadata {
                    key: key(k),
                    reason: format!("{v} is out of range"),
                })
        };
        let opt_u = |k: &str| -> Result<Option<usize>> {
            match g.get(&key(k)) {
                Some(_) => u(k).map(Some),
                None => Ok(None),
            }
        };
        let opt_f = |k: &str| -> Result<Option<f32>> {
            let v = g.opt_f64(&key(k))?;
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => Err(Error::Metadata {
                    key: key(k),
                    reason: format!("{x} is not a positive number"),
                }),
                _ => Ok(v.map(|x| x as f32)),
            }
        };
        let n_layer = u("block_count")?;
        let dim = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_kv_head = opt_u("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head % n_kv_head != 0 {
            return Err(Error::Unsupported(format!(
                "{n_head} heads are not a multiple of {n_kv_head} KV heads"
            )));
        }
        let head_dim = match opt_u("attention.key_length")? {
            Some(k) => k,
            None if dim % n_head == 0 => dim / n_head,
            None => {
                return Err(Error::Unsupported(format!(
                    "dim {dim} is not a multiple of {n_head} heads"
                )))
            }
        };
        if let Some(v) = opt_u("attention.value_length")? {
            if v != head_dim {
                return Err(Error::Unsupported(format!(
                    "value length {v} differs from key length {head_dim}"
                )));
            }
        }
        let rope_dim = opt_u("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::Unsupported(format!(
                "rope dimension {rope_dim} with head dim {head_dim}"
            )));
        }
        let context_length = u("context_length")?;
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::Unsupported("tensor `token_embd.weight` missing".into()))?;
        let vocab = embd.matrix_shape().0;
        let rms_eps = g
            .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5) as f32;
        let rope_theta = opt_f("rope.freq_base")?;
        let rope_scale = match opt_f("rope.scaling.factor")? {
            Some(f) => 1.0 / f,
            None => 1.0,
        };
        let mut cfg = Self {
            arch,
            n_layer,
            dim,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            vocab,
            context_length,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rope_theta_local: rope_theta.unwrap_or(10_000.0),
            rope_scale: 1.0,
            rope_dim,
            rope_style: RopeStyle::Normal,
            rms_eps,
            sliding_window: None,
            sliding_period: 1,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            embed_scale: 1.0,
            activation: Activation::Silu,
            attn_softcap: None,
            final_softcap: None,
        };
        match arch {
            Architecture::Llama => {
                if dim != n_head * head_dim {
                    return Err(Error::Unsupported(format!(
                        "llama: dim {dim} != {n_head} heads x {head_dim}"
                    )));
                }
            }
            Architecture::Gemma3 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.rope_theta = rope_theta.unwrap_or(1_000_000.0);
                cfg.rope_theta_local = opt_f("rope.freq_base_swa")?.unwrap_or(10_000.0);
                cfg.rope_scale = rope_scale;
                cfg.embed_scale = (dim as f32).sqrt();
                cfg.activation = Activation::GeluTanh;
                // llama.cpp (after gemma_pytorch): the 27B model scales by dim / heads.
                cfg.attn_scale = if n_layer == 62 {
                    1.0 / ((dim / n_head) as f32).sqrt()
                } else {
                    1.0 / (head_dim as f32).sqrt()
                };
                cfg.attn_softcap = opt_f("attn_logit_softcapping")?;
                cfg.final_softcap = opt_f("final_logit_softcapping")?;
                if let Some(w) = opt_u("attention.sliding_window")? {
                    if w > context_length {
                        return Err(Error::Metadata {
                            key: key("attention.sliding_window"),
                            reason: format!(
                                "window {w} is larger than the context length {context_length}"
                            ),
                        });
                    }
                    // Every sixth layer is global unless the metadata says otherwise.
                    cfg.sliding_period = opt_u("attention.sliding_window_pattern")?.unwrap_or(6);
                    cfg.sliding_window = Some(w);
                }
            }
        }
        Ok(cfg)
    }

    /// Width of the K (and V) projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Width of the Q projection (and of the attention output).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Whether layer `l` attends through the sliding window.
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some() && l % self.sliding_period < self.sliding_period - 1
    }

    /// Positions layer `l`'s KV cache holds in an engine of context `ctx` and batch `batch`:
    /// `ctx` for a global layer, `min(ctx, window + batch)` for a sliding one (the ring must
    /// keep every key the first query of a batch sees while the batch writes its own).
    pub fn kv_positions(&self, l: usize, ctx: usize, batch: usize) -> usize {
        match self.sliding_window {
            Some(w) if self.is_sliding(l) => ctx.min(w + batch),
            _ => ctx,
        }
    }

    /// Bytes of the KV cache (elements of `ty`) of an engine of context `ctx` and batch `batch`.
    pub fn kv_cache_bytes(&self, ctx: usize, batch: usize, ty: KvCacheType) -> usize {
        (0..self.n_layer)
            .map(|l| 2 * ty.bytes_for(self.kv_positions(l, ctx, batch) * self.kv_dim()))
            .sum()
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
    /// Index into `DecoderModel::packed` when this matrix was repacked.
    packed: Option<usize>,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QWeight,
    wk: QWeight,
    wv: QWeight,
    wo: QWeight,
    /// Gemma: per-head RMSNorm weights of Q and K (`head_dim` each).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// Gemma: RMSNorm of the attention output before the residual add.
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    w_gate: QWeight,
    w_up: QWeight,
    w_down: QWeight,
    /// Gemma: RMSNorm of the FFN output before the residual add.
    post_ffn_norm: Option<Vec<f32>>,
}

/// Loaded weights (shared, read-only): create any number of [`DecoderEngine`]s from one.
pub struct DecoderModel {
    gguf: GgufFile,
    cfg: DecoderConfig,
    layers: Vec<Layer>,
    tok_embd: QWeight,
    output_norm: Vec<f32>,
    output: QWeight,
    /// Row-interleaved copies of the matrices (see [`DecoderModel::from_gguf_with`]).
    packed: Vec<PackedMatrix>,
}

impl std::fmt::Debug for DecoderModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderModel")
            .field("origin", &self.gguf.origin())
            .field("config", &self.cfg)
            .finish()
    }
}

impl DecoderModel {
    /// Memory-maps and loads a GGUF of a supported architecture (repacking its matrices where
    /// that pays off: [`Packing::Auto`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        Self::open_with(path, Packing::Auto)
    }

    /// Memory-maps and loads a GGUF, repacking its matrices as `packing` says.
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

    /// Whether the matrices were repacked at load (see [`DecoderModel::from_gguf_with`]).
    pub fn is_packed(&self) -> bool {
        !self.packed.is_empty()
    }

    /// Heap bytes of the repacked matrices and the bytes of the file they replace (whose map
    /// pages were released): their difference is what packing adds to resident memory (the
    /// Q5_0 matrices widen to Q8_0 blocks; other types repack at their size or close to it).
    /// `(0, 0)` when nothing was packed.
    pub fn packed_bytes(&self) -> (usize, usize) {
        let heap = self.packed.iter().map(PackedMatrix::size_bytes).sum();
        let file = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .chain([&self.output])
            .filter(|w| w.packed.is_some())
            .map(|w| w.len)
            .sum();
        (heap, file)
    }

    /// Loads from a parsed GGUF. Every matrix `packing` selects ([`Packing::packs_matrix`])
    /// is copied once into the row-interleaved layout (faster
    /// matrix-vector products on every SIMD path, see BENCHMARKS.md; the NEON kernels are
    /// verified under qemu but not yet timed on ARM; on the scalar path the packed form runs
    /// its slower scalar twin, so leave it off there) and the map's pages of those matrices
    /// are released, so resident memory stays about the file size. Otherwise the weights
    /// stay in the map, uncopied.
    pub fn from_gguf_with(gguf: GgufFile, packing: Packing) -> Result<Self> {
        let pack = packing.packs();
        let cfg = DecoderConfig::from_gguf(&gguf)?;
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
        let (d, q, kv, f) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let gemma = cfg.arch == Architecture::Gemma3;
        // `block_count` comes from the file: reserve no more layers than it has tensors, so a
        // header claiming millions of layers fails on the first missing one, cheaply.
        let mut layers = Vec::with_capacity(cfg.n_layer.min(gguf.tensors().len()));
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let extra = |s: &str, len: usize| -> Result<Option<Vec<f32>>> {
                if gemma {
                    vec(&n(s), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: vec(&n("attn_norm"), d)?,
                wq: mat(&n("attn_q"), q, d)?,
                wk: mat(&n("attn_k"), kv, d)?,
                wv: mat(&n("attn_v"), kv, d)?,
                wo: mat(&n("attn_output"), d, q)?,
                q_norm: extra("attn_q_norm", cfg.head_dim)?,
                k_norm: extra("attn_k_norm", cfg.head_dim)?,
                post_attn_norm: extra("post_attention_norm", d)?,
                ffn_norm: vec(&n("ffn_norm"), d)?,
                w_gate: mat(&n("ffn_gate"), f, d)?,
                w_up: mat(&n("ffn_up"), f, d)?,
                w_down: mat(&n("ffn_down"), d, f)?,
                post_ffn_norm: extra("post_ffw_norm", d)?,
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
            model.pack(packing)?;
        }
        let (gguf, cfg) = (&model.gguf, &model.cfg);
        tracing::info!(
            origin = gguf.origin(),
            arch = cfg.arch.name(),
            layers = cfg.n_layer,
            dim = cfg.dim,
            vocab = cfg.vocab,
            window = cfg.sliding_window,
            tied = gguf.tensor("output.weight").is_none(),
            packed = model.packed.len(),
            "decoder model loaded"
        );
        Ok(model)
    }
    /// Repacks every supported matrix and releases its pages of the map (the token
    /// embedding's too when it is only the tied output: lookups fault the few rows they read
    /// back in).
    fn pack(&mut self, packing: Packing) -> Result<()> {
        let mut packed = Vec::new();
        let mut one = |w: &mut QWeight, gguf: &GgufFile| -> Result<()> {
            if w.packed.is_none() && packing.packs_matrix(w.ty, w.rows, w.cols) {
                let bytes = gguf
                    .bytes()
                    .get(w.start..w.start + w.len)
                    .ok_or_else(|| Error::Unsupported("weight outside the file".into()))?;
                // Release the map's pages every few MiB as the rows are copied, so a large
                // matrix (Gemma's 178 MB tied embedding) is never resident twice.
                let row_bytes = w.len / w.rows;
                let mut released = 0;
                let m = QMatrix::new(w.ty, w.rows, w.cols, bytes)?;
                packed.push(PackedMatrix::pack_releasing(&m, |rows| {
                    let upto = rows * row_bytes;
                    if upto - released >= 4 << 20 || rows == w.rows {
                        gguf.release_pages(w.start + released, upto - released);
                        released = upto;
                    }
                })?);
                w.packed = Some(packed.len() - 1);
                gguf.release_pages(w.start, w.len);
            }
            Ok(())
        };
        for l in &mut self.layers {
            // The matrices that share an input run as one job when they share a layout
            // (`matmul_shared`), so `Auto` packs such a group whole or not at all: on aarch64
            // Gemma's Q5_0 q / k next to its Q8_0 v would otherwise split the group.
            let groups: [&mut [&mut QWeight]; 4] = [
                &mut [&mut l.wq, &mut l.wk, &mut l.wv],
                &mut [&mut l.w_gate, &mut l.w_up],
                &mut [&mut l.wo],
                &mut [&mut l.w_down],
            ];
            for g in groups {
                if packing.considers_group(g.iter().map(|w| (w.ty, w.rows, w.cols))) {
                    for w in g.iter_mut() {
                        one(w, &self.gguf)?;
                    }
                }
            }
        }
        one(&mut self.output, &self.gguf)?;
        self.packed = packed;
        Ok(())
    }

    /// `y_i = W_i x` for weights that share the input (q / k / v, gate / up): one parallel
    /// job where all are packed ([`PackedMatrix::matmul_many`]: one hand-off to the kernel
    /// threads, the input quantized once) or, for one token, all row-major
    /// ([`QMatrix::matvec_many`]), else one product each. Fixed-size arrays: no
    /// allocation on this per-layer, per-token path.
    fn matmul_shared<const N: usize>(
        &self,
        parts: [(&QWeight, &mut [f32]); N],
        x: &[f32],
        n: usize,
        sc: &mut Scratch,
    ) -> Result<()> {
        let packed = |w: &QWeight| w.packed.and_then(|i| self.packed.get(i));
        if parts.iter().all(|(w, _)| packed(w).is_some()) {
            let mut ps = parts.map(|(w, y)| (packed(w).expect("checked just above"), y));
            PackedMatrix::matmul_many(&mut ps, x, n, sc)?;
            return Ok(());
        }
        if n == 1 && parts.iter().all(|(w, _)| packed(w).is_none()) {
            // Row-major (e.g. Q5_0 on aarch64, where packing would widen it): one job too.
            let ms = parts.each_ref().map(|(w, _)| self.m(w));
            if ms.iter().all(Result::is_ok) {
                let ms = ms.map(|m| m.expect("checked just above"));
                let mut i = 0;
                let mut ps = parts.map(|(_, y)| {
                    i += 1;
                    (&ms[i - 1], y)
                });
                QMatrix::matvec_many(&mut ps, x, sc)?;
                return Ok(());
            }
        }
        for (w, y) in parts {
            self.matmul(w, x, n, y, sc)?;
        }
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
    pub fn config(&self) -> &DecoderConfig {
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
    /// ([`quant::packed_kernels_available`]): every SIMD path. On x86-64, where both layouts
    /// are timed (BENCHMARKS.md), every supported matrix, Q5_0 widened to Q8_0 (faster
    /// despite 55 % more bytes). On aarch64, where the packed kernels are verified under
    /// qemu but cannot be timed here, only the matrices whose packed form streams no more
    /// bytes than the file's (Q8_0, Q4_0, Q4_1, Q6_K: the same bytes; counted per token by
    /// `examples/token_counts.rs`, see BENCHMARKS.md); Q4_K (+2.8 %) and Q5_0 (+55 %) stay
    /// in the map. Matrices that share an input (a layer's q / k / v, its gate and up) are
    /// packed together or not at all, so each group keeps one layout and runs as one job.
    /// See [`Packing::packs_matrix`].
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

    /// Whether this policy packs a `rows x cols` matrix of `ty` on the current kernel path.
    pub fn packs_matrix(self, ty: GgmlType, rows: usize, cols: usize) -> bool {
        let Some(packed) = PackedMatrix::packed_size(ty, rows, cols) else {
            return false;
        };
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::Auto => {
                self.packs()
                    && (!cfg!(target_arch = "aarch64")
                        || ty.row_bytes(cols).is_ok_and(|b| packed <= b * rows))
            }
        }
    }

    /// Whether the matrices of a group that shares an input (`(type, rows, cols)` each) are
    /// considered for packing at all: under `Auto` only when every one of them packs (one
    /// layout per group, one job per group); `Always` and `Never` decide per matrix.
    fn considers_group(self, members: impl IntoIterator<Item = (GgmlType, usize, usize)>) -> bool {
        self != Self::Auto
            || members
                .into_iter()
                .all(|(ty, rows, cols)| self.packs_matrix(ty, rows, cols))
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

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheType {
    /// 32-bit floats: exactly what the projections computed.
    F32,
    /// IEEE half (llama.cpp's default `-ctk f16 -ctv f16`): half the memory and the
    /// attention's memory traffic; keys and values rounded to 11 significant bits. Measured
    /// on Gemma 3 270M with exact (F32) weights against the same with an f32 cache: logits
    /// within 1e-3 relative, top-1 identical at 80/80 teacher-forced positions
    /// (`tests/llm_candle_gemma3.rs`), 30-100 times below the weights' quantization noise.
    #[default]
    F16,
    /// ggml's q8_0 (llama.cpp's `-ctk q8_0 -ctv q8_0`): blocks of 32 values as bytes and one
    /// f16 scale, 34 bytes per 32 values (0.53x the f16 cache's memory). Needs a head width
    /// that is a multiple of 32 (every Llama and Gemma has one). Measured on SmolLM2-135M
    /// and Gemma 3 270M against the f16 cache: BENCHMARKS.md, session 14 (memory, top-1, logits).
    Q8_0,
}

impl KvCacheType {
    /// Parses `f32` / `f16` / `q8_0` (as the CLI's `--kv-cache` takes it).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// `f32` / `f16` / `q8_0`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
        }
    }

    /// Bytes that `values` cached values take (`values` a multiple of 32 for q8_0).
    pub fn bytes_for(self, values: usize) -> usize {
        match self {
            Self::F32 => 4 * values,
            Self::F16 => 2 * values,
            Self::Q8_0 => values / QK * std::mem::size_of::<BlockQ8_0>(),
        }
    }
}

/// `n` zero halves in a calloc'd allocation (`vec![f16::ZERO; n]` writes every element).
fn zeroed_f16(n: usize) -> Vec<f16> {
    use half::vec::HalfBitsVecExt;
    vec![0u16; n].reinterpret_into()
}

/// `n` zero q8_0 blocks in a zeroed allocation (all-zero bytes are the block of scale 0).
fn zeroed_q8_0(n: usize) -> Vec<BlockQ8_0> {
    if n == 0 {
        return Vec::new();
    }
    let layout = std::alloc::Layout::array::<BlockQ8_0>(n).expect("KV cache size overflows");
    // SAFETY: `layout` is non-zero-sized (n > 0, blocks are 34 bytes); the allocation is
    // checked for null; zero bytes are a valid `BlockQ8_0` (an f16 0 and 32 zero bytes, no
    // padding: it is `repr(C, packed)`); the Vec gets exactly the layout it frees with
    // (capacity n of `BlockQ8_0`, from the global allocator).
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut BlockQ8_0;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Vec::from_raw_parts(p, n, n)
    }
}

/// The KV cache: keys and values of every layer's positions (see [`KvRegion`]).
enum KvStore {
    F32(Vec<f32>, Vec<f32>),
    F16(Vec<f16>, Vec<f16>),
    Q8_0(Vec<BlockQ8_0>, Vec<BlockQ8_0>),
}

impl KvStore {
    /// Writes one position's keys and values (`kv_dim` each) at value offset `dst`.
    fn store(&mut self, dst: usize, k: &[f32], v: &[f32]) {
        fn put<T: KvElem>(kc: &mut [T], vc: &mut [T], dst: usize, k: &[f32], v: &[f32]) {
            let (a, b) = (dst / T::PER, (dst + k.len()) / T::PER);
            T::store(&mut kc[a..b], k);
            T::store(&mut vc[a..b], v);
        }
        match self {
            KvStore::F32(kc, vc) => put(kc, vc, dst, k, v),
            KvStore::F16(kc, vc) => put(kc, vc, dst, k, v),
            KvStore::Q8_0(kc, vc) => put(kc, vc, dst, k, v),
        }
    }

    /// [`attention`] over the values `r` of the cache (one layer's region).
    fn attention(&self, g: &AttnGeometry, q: &[f32], r: std::ops::Range<usize>, att: &mut [f32]) {
        fn run<T: KvElem>(
            kc: &[T],
            vc: &[T],
            g: &AttnGeometry,
            q: &[f32],
            r: std::ops::Range<usize>,
            att: &mut [f32],
        ) {
            let r = r.start / T::PER..r.end / T::PER;
            attention(g, q, &kc[r.clone()], &vc[r], att)
        }
        match self {
            KvStore::F32(k, v) => run(k, v, g, q, r, att),
            KvStore::F16(k, v) => run(k, v, g, q, r, att),
            KvStore::Q8_0(k, v) => run(k, v, g, q, r, att),
        }
    }

    fn bytes(&self) -> usize {
        fn size<T>(k: &[T], v: &[T]) -> usize {
            std::mem::size_of_val(k) + std::mem::size_of_val(v)
        }
        match self {
            KvStore::F32(k, v) => size(k, v),
            KvStore::F16(k, v) => size(k, v),
            KvStore::Q8_0(k, v) => size(k, v),
        }
    }
}

/// A KV cache element type and its attention kernels. An element holds `PER` values (32 for a
/// q8_0 block); rows and offsets of the cache are multiples of it.
trait KvElem: Copy + Send + Sync {
    const PER: usize = 1;
    fn scores(
        q: vector::Strided<'_>,
        k: vector::Strided<'_, Self>,
        out: &mut vector::StridedMut<'_>,
    );
    fn weighted_sum(
        w: vector::Strided<'_>,
        v: vector::Strided<'_, Self>,
        out: &mut vector::StridedMut<'_>,
    );
    fn store(dst: &mut [Self], src: &[f32]);
}

impl KvElem for f32 {
    fn scores(q: vector::Strided<'_>, k: vector::Strided<'_>, out: &mut vector::StridedMut<'_>) {
        vector::scores(q, k, out)
    }
    fn weighted_sum(
        w: vector::Strided<'_>,
        v: vector::Strided<'_>,
        out: &mut vector::StridedMut<'_>,
    ) {
        vector::weighted_sum(w, v, out)
    }
    fn store(dst: &mut [Self], src: &[f32]) {
        dst.copy_from_slice(src)
    }
}

impl KvElem for BlockQ8_0 {
    const PER: usize = QK;
    fn scores(
        q: vector::Strided<'_>,
        k: vector::Strided<'_, BlockQ8_0>,
        out: &mut vector::StridedMut<'_>,
    ) {
        vector::scores_q8_0(q, k, out)
    }
    fn weighted_sum(
        w: vector::Strided<'_>,
        v: vector::Strided<'_, BlockQ8_0>,
        out: &mut vector::StridedMut<'_>,
    ) {
        vector::weighted_sum_q8_0(w, v, out)
    }
    fn store(dst: &mut [Self], src: &[f32]) {
        quantize_row_q8_0(src, dst)
    }
}

impl KvElem for f16 {
    fn scores(
        q: vector::Strided<'_>,
        k: vector::Strided<'_, f16>,
        out: &mut vector::StridedMut<'_>,
    ) {
        vector::scores_f16(q, k, out)
    }
    fn weighted_sum(
        w: vector::Strided<'_>,
        v: vector::Strided<'_, f16>,
        out: &mut vector::StridedMut<'_>,
    ) {
        vector::weighted_sum_f16(w, v, out)
    }
    fn store(dst: &mut [Self], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f16::from_f32(s);
        }
    }
}

/// The shape of one layer's attention over one batch.
struct AttnGeometry {
    /// Tokens in the batch, position of the first.
    n: usize,
    pos0: usize,
    /// Query row width (all heads), KV row width, head width, query heads per KV head.
    qd: usize,
    kv_dim: usize,
    hd: usize,
    group: usize,
    /// Ring slots of this layer, sliding window (if a sliding layer).
    cap: usize,
    window: Option<usize>,
    scale: f32,
    softcap: Option<f32>,
}

/// Attention of the batch's queries `q` (token-major, `n x qd`) over the layer's cached
/// keys `kc` and values `vc` (`cap` slots of `kv_dim`) into `att`, head-major
/// `[head][block][QB][hd]`: one task per head and block of QB queries, on the kernels'
/// threads. Query `p` sees the keys `lo(p)..=p` (`lo` > 0 only on a sliding layer), key `t`
/// in ring slot `t % cap`; a block takes the union of its queries' ranges and gives the keys
/// outside a query's own range weight 0.
fn attention<T: KvElem>(g: &AttnGeometry, q: &[f32], kc: &[T], vc: &[T], att: &mut [f32]) {
    let &AttnGeometry {
        n,
        pos0,
        qd,
        kv_dim,
        hd,
        group,
        cap,
        window,
        scale,
        softcap,
    } = g;
    let nblk = n.div_ceil(QB);
    let lo_of = |p: usize| window.map_or(0, |w| (p + 1).saturating_sub(w));
    let task = |c: usize, out: &mut [f32]| {
        let (h, i0) = (c / nblk, (c % nblk) * QB);
        let m = (n - i0).min(QB);
        let kvo = (h / group) * hd;
        let (first, last) = (pos0 + i0, pos0 + i0 + m - 1);
        let lo = lo_of(first);
        let nk = last + 1 - lo;
        SCORES.with_borrow_mut(|s| {
            if s.len() < QB * nk {
                s.resize(QB * nk, 0.0);
            }
            let s = &mut s[..m * nk];
            let qs = vector::Strided::new(&q[i0 * qd + h * hd..], m, hd, qd);
            // The keys lo..=last in at most two runs of consecutive ring slots.
            let slot0 = lo % cap;
            let run0 = nk.min(cap - slot0);
            let runs = [(slot0, 0, run0), (0, run0, nk - run0)];
            for &(slot, j0, cnt) in runs.iter().filter(|r| r.2 > 0) {
                let ks = vector::Strided::new(
                    &kc[(slot * kv_dim + kvo) / T::PER..],
                    cnt,
                    hd / T::PER,
                    kv_dim / T::PER,
                );
                T::scores(
                    qs,
                    ks,
                    &mut vector::StridedMut::new(&mut s[j0..], m, cnt, nk),
                );
            }
            for (t, row) in s.chunks_exact_mut(nk).enumerate() {
                let p = first + t;
                let (a, b) = (lo_of(p) - lo, p + 1 - lo);
                // Keys outside this query's range get weight 0.
                row[..a].fill(0.0);
                row[b..].fill(0.0);
                let row = &mut row[a..b];
                match softcap {
                    Some(cap) => {
                        row.iter_mut()
                            .for_each(|v| *v = cap * (*v * scale / cap).tanh());
                        vector::softmax(row, 1.0);
                    }
                    None => vector::softmax(row, scale),
                }
            }
            out.fill(0.0);
            let mut o = vector::StridedMut::new(out, m, hd, hd);
            for &(slot, j0, cnt) in runs.iter().filter(|r| r.2 > 0) {
                let ws = vector::Strided::new(&s[j0..], m, cnt, nk);
                let vs = vector::Strided::new(
                    &vc[(slot * kv_dim + kvo) / T::PER..],
                    cnt,
                    hd / T::PER,
                    kv_dim / T::PER,
                );
                T::weighted_sum(ws, vs, &mut o);
            }
        });
    };
    let seen = window.map_or(pos0 + n, |w| w.min(pos0 + n));
    quant::par_chunks_mut(att, QB * hd, 2 * n * seen * qd, task);
}

/// Options of a [`DecoderEngine`] (and of the load in [`crate::Llm::open`]).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Context length of the KV cache (capped at the model's training context).
    pub context_length: usize,
    /// Most prompt tokens processed per batch.
    pub batch: usize,
    /// Whether [`crate::Llm::open`] repacks the weights at load.
    pub packing: Packing,
    /// Element type of the KV cache.
    pub kv_cache: KvCacheType,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            context_length: 2048,
            batch: 64,
            packing: Packing::Auto,
            kv_cache: KvCacheType::default(),
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

/// [`rmsnorm`] in place.
fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for (xv, &wv) in x.iter_mut().zip(w) {
        *xv = *xv * inv * wv;
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

/// Rotates the pairs `(x[i], x[i + rope_dim/2])` of every head of `x` (`n_heads * head_dim`)
/// by the angles whose cosines / sines are `cos` / `sin` (`rope_dim / 2` each) — llama.cpp's
/// "NeoX" RoPE (Gemma, and the rotate-half form of Hugging Face models).
pub fn rope_neox(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for head in x.chunks_exact_mut(head_dim) {
        for (i, (&c, &s)) in cos.iter().zip(sin).enumerate() {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * c - b * s;
            head[i + half] = a * s + b * c;
        }
    }
}

/// `cos` / `sin` tables, `ctx` rows of `rope_dim / 2`: angle `pos * scale * theta^(-2i/d)`.
fn rope_tables(ctx: usize, rope_dim: usize, theta: f32, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let half = rope_dim / 2;
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for p in 0..ctx {
        for i in 0..half {
            let freq = (theta as f64).powf(-2.0 * i as f64 / rope_dim as f64);
            let a = p as f64 * scale as f64 * freq;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// GELU, tanh approximation (PyTorch's `gelu(approximate="tanh")`, ggml's `gelu`).
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh())
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
    hb: Vec<f32>,
    hb2: Vec<f32>,
    logits: Vec<f32>,
}

/// One layer's part of the KV cache: `cap` positions from position `off`; position `p`
/// lives in slot `p % cap` (for a global layer `cap` is the context, so the slot is `p`).
#[derive(Clone, Copy, Debug)]
struct KvRegion {
    off: usize,
    cap: usize,
}

/// The native engine: a model plus its KV cache and buffers.
pub struct DecoderEngine {
    model: Arc<DecoderModel>,
    ctx: usize,
    batch: usize,
    pos: usize,
    cache: KvStore,
    kv: Vec<KvRegion>,
    /// RoPE tables of the global layers and of the sliding ones.
    rope_global: (Vec<f32>, Vec<f32>),
    rope_local: (Vec<f32>, Vec<f32>),
    buf: Buffers,
    scratch: Scratch,
}

impl std::fmt::Debug for DecoderEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderEngine")
            .field("ctx", &self.ctx)
            .field("pos", &self.pos)
            .finish()
    }
}

impl DecoderEngine {
    /// An engine with its cache and buffers preallocated.
    pub fn new(model: Arc<DecoderModel>, opts: &EngineOptions) -> Result<Self> {
        let c = model.config().clone();
        if opts.context_length == 0 || opts.batch == 0 {
            return Err(Error::InvalidArgument(
                "context length and batch must be > 0".into(),
            ));
        }
        let ctx = opts.context_length.min(c.context_length);
        let batch = opts.batch.min(ctx);
        let mut kv = Vec::with_capacity(c.n_layer);
        let mut off = 0;
        for l in 0..c.n_layer {
            let cap = c.kv_positions(l, ctx, batch);
            kv.push(KvRegion { off, cap });
            off += cap;
        }
        let values = off * c.kv_dim();
        if opts.kv_cache == KvCacheType::Q8_0 && !c.head_dim.is_multiple_of(QK) {
            return Err(Error::InvalidArgument(format!(
                "a q8_0 KV cache needs a head width that is a multiple of {QK}; this model's is {} \
                 (use f16)",
                c.head_dim
            )));
        }
        let cache = match opts.kv_cache {
            KvCacheType::F32 => KvStore::F32(vec![0.0; values], vec![0.0; values]),
            // Zeroed through `u16` so the allocation is lazily zeroed pages (as the f32 one):
            // a long context costs resident memory only for the positions written.
            KvCacheType::F16 => KvStore::F16(zeroed_f16(values), zeroed_f16(values)),
            KvCacheType::Q8_0 => KvStore::Q8_0(zeroed_q8_0(values / QK), zeroed_q8_0(values / QK)),
        };
        let rope_global = rope_tables(ctx, c.rope_dim, c.rope_theta, c.rope_scale);
        let rope_local = if c.sliding_window.is_some() {
            rope_tables(ctx, c.rope_dim, c.rope_theta_local, 1.0)
        } else {
            (Vec::new(), Vec::new())
        };
        tracing::debug!(
            ctx,
            batch,
            kv_mib = c.kv_cache_bytes(ctx, batch, opts.kv_cache) >> 20,
            "decoder engine"
        );
        let (qd, wide) = (c.q_dim(), c.q_dim().max(c.dim));
        Ok(Self {
            ctx,
            batch,
            pos: 0,
            cache,
            kv,
            rope_global,
            rope_local,
            buf: Buffers {
                x: vec![0.0; batch * c.dim],
                xb: vec![0.0; batch * wide],
                xb2: vec![0.0; batch * c.dim],
                q: vec![0.0; batch * qd],
                k: vec![0.0; batch * c.kv_dim()],
                v: vec![0.0; batch * c.kv_dim()],
                att_heads: vec![0.0; batch.div_ceil(QB) * QB * qd],
                hb: vec![0.0; batch * c.ffn_dim],
                hb2: vec![0.0; batch * c.ffn_dim],
                logits: vec![0.0; c.vocab],
            },
            scratch: Scratch::new(),
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<DecoderModel> {
        &self.model
    }

    /// Bytes held by the KV cache (what the layers can see: a sliding layer keeps its window
    /// plus one batch, a global layer the whole context).
    pub fn kv_cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    fn check(&self, tokens: &[u32]) -> Result<()> {
        crate::engine::check_tokens(tokens, self.pos, self.ctx, self.model.cfg.vocab)
    }

    /// Runs the blocks on `tokens` (at most `batch`), leaving the final hidden states in
    /// `buf.x`.
    fn run_batch(&mut self, tokens: &[u32]) -> Result<()> {
        let model = Arc::clone(&self.model);
        let c = &model.cfg;
        let n = tokens.len();
        let (dim, qd, kv_dim, hd, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim, c.ffn_dim);
        let pos0 = self.pos;
        let half = c.rope_dim / 2;
        let group = c.n_head / c.n_kv_head;
        let (scale, softcap) = (c.attn_scale, c.attn_softcap);
        let b = &mut self.buf;
        let sc = &mut self.scratch;

        let embd = model.m(&model.tok_embd)?;
        for (i, &t) in tokens.iter().enumerate() {
            let row = &mut b.x[i * dim..(i + 1) * dim];
            embd.dequantize_row(t as usize, row)?;
            if c.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= c.embed_scale);
            }
        }
        let mm = |w: &QWeight, x: &[f32], y: &mut [f32], sc: &mut Scratch| -> Result<()> {
            model.matmul(w, x, n, y, sc)
        };
        let rope = match c.rope_style {
            RopeStyle::Normal => rope_normal,
            RopeStyle::Neox => rope_neox,
        };

        for (l, layer) in model.layers.iter().enumerate() {
            let sliding = c.is_sliding(l);
            let window = c.sliding_window.filter(|_| sliding);
            let KvRegion { off, cap } = self.kv[l];
            let (rcos, rsin) = if sliding {
                (&self.rope_local.0, &self.rope_local.1)
            } else {
                (&self.rope_global.0, &self.rope_global.1)
            };
            // Attention.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                rmsnorm(&mut b.xb[r.clone()], &b.x[r], &layer.attn_norm, c.rms_eps);
            }
            let xb = &b.xb[..n * dim];
            model.matmul_shared(
                [
                    (&layer.wq, &mut b.q[..n * qd]),
                    (&layer.wk, &mut b.k[..n * kv_dim]),
                    (&layer.wv, &mut b.v[..n * kv_dim]),
                ],
                xb,
                n,
                sc,
            )?;
            for i in 0..n {
                let p = pos0 + i;
                let (qi, ki) = (
                    &mut b.q[i * qd..(i + 1) * qd],
                    &mut b.k[i * kv_dim..(i + 1) * kv_dim],
                );
                if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                    qi.chunks_exact_mut(hd)
                        .for_each(|h| rmsnorm_in_place(h, qn, c.rms_eps));
                    ki.chunks_exact_mut(hd)
                        .for_each(|h| rmsnorm_in_place(h, kn, c.rms_eps));
                }
                let (cos, sin) = (
                    &rcos[p * half..(p + 1) * half],
                    &rsin[p * half..(p + 1) * half],
                );
                rope(qi, hd, cos, sin);
                rope(ki, hd, cos, sin);
                let dst = (off + p % cap) * kv_dim;
                let vi = &b.v[i * kv_dim..(i + 1) * kv_dim];
                self.cache.store(dst, ki, vi);
            }
            let nblk = n.div_ceil(QB);
            let geo = AttnGeometry {
                n,
                pos0,
                qd,
                kv_dim,
                hd,
                group,
                cap,
                window,
                scale,
                softcap,
            };
            let att = &mut b.att_heads[..c.n_head * nblk * QB * hd];
            let q = &b.q[..n * qd];
            let r = off * kv_dim..(off + cap) * kv_dim;
            self.cache.attention(&geo, q, r, att);
            // Back to token-major in xb.
            for h in 0..c.n_head {
                for i in 0..n {
                    let src = (h * nblk * QB + i) * hd;
                    b.xb[i * qd + h * hd..i * qd + (h + 1) * hd]
                        .copy_from_slice(&att[src..src + hd]);
                }
            }
            mm(&layer.wo, &b.xb[..n * qd], &mut b.xb2[..n * dim], sc)?;
            if let Some(w) = &layer.post_attn_norm {
                b.xb2[..n * dim]
                    .chunks_exact_mut(dim)
                    .for_each(|r| rmsnorm_in_place(r, w, c.rms_eps));
            }
            for (x, &o) in b.x[..n * dim].iter_mut().zip(&b.xb2[..n * dim]) {
                *x += o;
            }
            // FFN.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                rmsnorm(&mut b.xb[r.clone()], &b.x[r], &layer.ffn_norm, c.rms_eps);
            }
            let xb = &b.xb[..n * dim];
            model.matmul_shared(
                [
                    (&layer.w_gate, &mut b.hb[..n * ffn]),
                    (&layer.w_up, &mut b.hb2[..n * ffn]),
                ],
                xb,
                n,
                sc,
            )?;
            let glu = match c.activation {
                Activation::Silu => vector::silu_mul,
                Activation::GeluTanh => vector::gelu_tanh_mul,
            };
            let up = &b.hb2[..n * ffn];
            quant::par_chunks_mut(&mut b.hb[..n * ffn], GLU_CHUNK, 8 * n * ffn, |i, g| {
                glu(g, &up[i * GLU_CHUNK..])
            });
            mm(&layer.w_down, &b.hb[..n * ffn], &mut b.xb2[..n * dim], sc)?;
            if let Some(w) = &layer.post_ffn_norm {
                b.xb2[..n * dim]
                    .chunks_exact_mut(dim)
                    .for_each(|r| rmsnorm_in_place(r, w, c.rms_eps));
            }
            for (x, &o) in b.x[..n * dim].iter_mut().zip(&b.xb2[..n * dim]) {
                *x += o;
            }
        }
        self.pos += n;
        Ok(())
    }

    /// Final norm + output projection (+ soft-capping) of hidden row `i` of `buf.x` into
    /// `out`.
    fn logits_of_row(&mut self, i: usize, out: &mut [f32]) -> Result<()> {
        let c = &self.model.cfg;
        let dim = c.dim;
        let x = &self.buf.x[i * dim..(i + 1) * dim];
        let xb = &mut self.buf.xb[..dim];
        rmsnorm(xb, x, &self.model.output_norm, c.rms_eps);
        self.model
            .matmul(&self.model.output, xb, 1, out, &mut self.scratch)?;
        if let Some(cap) = c.final_softcap {
            out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(())
    }
}

impl LanguageModel for DecoderEngine {
    fn name(&self) -> &str {
        "edgeai"
    }

    fn describe(&self) -> String {
        let kv = match self.cache {
            KvStore::F32(..) => "f32",
            KvStore::F16(..) => "f16",
            KvStore::Q8_0(..) => "q8_0",
        };
        format!(
            "edgeai ({}, kernels {}{}, {kv} KV)",
            self.model.cfg.arch.name(),
            edgeai_core::quant::kernel_path().name(),
            if self.model.is_packed() {
                " packed"
            } else {
                ""
            }
        )
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
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

    /// Keeps the first `len` tokens. On a model with sliding-window layers the ring of those
    /// layers holds the last `window + batch` positions only, so truncating by more than
    /// `batch + 1` tokens past the window is an [`Error::InvalidArgument`] (state unchanged):
    /// reset and feed the prefix again.
    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.pos {
            return Err(Error::InvalidArgument(format!(
                "truncate to {len} tokens, only {} present",
                self.pos
            )));
        }
        let c = &self.model.cfg;
        if let Some(w) = c.sliding_window {
            for (l, r) in self.kv.iter().enumerate() {
                let kept_from = self.pos.saturating_sub(r.cap);
                let needed_from = (len + 1).saturating_sub(w);
                if c.is_sliding(l) && len > 0 && needed_from < kept_from {
                    return Err(Error::InvalidArgument(format!(
                        "truncate to {len} tokens: the sliding-window layers keep positions \
                         {kept_from}..{} only; reset and feed the prefix again",
                        self.pos
                    )));
                }
            }
        }
        self.pos = len;
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.check(tokens)?;
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
    fn auto_packs_where_the_packed_layout_is_timed_or_reads_no_more_bytes() {
        use GgmlType::*;
        let (r, c) = (64, 512);
        for ty in [Q8_0, Q4_0, Q4_1, Q4K, Q6K, Q5_0] {
            assert!(Packing::Always.packs_matrix(ty, r, c), "{ty}");
            assert!(!Packing::Never.packs_matrix(ty, r, c), "{ty}");
            let same_bytes =
                PackedMatrix::packed_size(ty, r, c).unwrap() == ty.row_bytes(c).unwrap() * r;
            assert_eq!(same_bytes, matches!(ty, Q8_0 | Q4_0 | Q4_1 | Q6K), "{ty}");
            let auto = Packing::Auto.packs_matrix(ty, r, c);
            if !quant::packed_kernels_available() {
                assert!(!auto, "{ty}");
            } else if cfg!(target_arch = "aarch64") {
                assert_eq!(auto, same_bytes, "{ty}");
            } else {
                assert!(auto, "{ty}");
            }
        }
        // A group (q / k / v) keeps one layout under `Auto`: Gemma's Q5_0 q and k with a Q8_0
        // v stay row-major together on aarch64 (Q5_0 would widen), pack together elsewhere.
        let qkv = [(Q5_0, r, c), (Q5_0, r, c), (Q8_0, r, c)];
        let auto_group = Packing::Auto.considers_group(qkv);
        if !quant::packed_kernels_available() || cfg!(target_arch = "aarch64") {
            assert!(!auto_group);
        } else {
            assert!(auto_group);
        }
        assert!(
            Packing::Auto.considers_group([(Q8_0, r, c), (Q4_1, r, c)]) == Packing::Auto.packs()
        );
        assert!(!Packing::Auto.considers_group([(Q8_0, r, c), (F16, r, c)]));
        assert!(Packing::Always.considers_group([(Q8_0, r, c), (F16, r, c)]));
        // Unsupported types and shapes are never packed.
        for p in [Packing::Auto, Packing::Always] {
            assert!(!p.packs_matrix(F16, r, c));
            assert!(!p.packs_matrix(Q6K, r, c + 32));
            assert!(!p.packs_matrix(Q8_0, r + 1, c));
        }
    }

    #[test]
    fn rope_rotates_consecutive_pairs() {
        let hd = 4;
        let mut x = vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0];
        let (cos, sin) = rope_tables(3, hd, 10_000.0, 1.0);
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
        let (cos, sin) = rope_tables(64, hd, 10_000.0, 1.0);
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

    fn model(tied: bool) -> Arc<DecoderModel> {
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
        Arc::new(DecoderModel::from_gguf(GgufFile::from_bytes(w.build()).unwrap()).unwrap())
    }

    fn engine(m: &Arc<DecoderModel>, batch: usize) -> DecoderEngine {
        DecoderEngine::new(
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
        let e = DecoderModel::from_gguf(GgufFile::from_bytes(g).unwrap()).unwrap_err();
        assert!(e.to_string().contains("architecture `gpt2`"), "{e}");
    }
}

#[cfg(test)]
mod gemma_synthetic {
    //! A tiny random Gemma 3 (sliding and global layers, QK norms, post-norms, GeGLU,
    //! soft-capping, head_dim != dim / heads) against a naive full-recompute reference written
    //! here from the architecture's definition: no cache, no ring, explicit masks.
    use super::*;
    use crate::gguf::{writer::GgufWriter, Value};

    const DIM: usize = 48;
    const HEADS: usize = 2;
    const KV_HEADS: usize = 1;
    const HD: usize = 32;
    const FFN: usize = 64;
    const VOCAB: usize = 40;
    const LAYERS: usize = 3;
    const WINDOW: usize = 4;
    const CTX: usize = 40;
    const CAP: f32 = 5.0;
    const EPS: f32 = 1e-6;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self, scale: f32) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        }
        fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
            (0..n).map(|_| offset + self.next(scale)).collect()
        }
    }

    /// The weights, kept in f32 for the reference; matrices row-major `[rows][cols]`.
    struct Weights {
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    }

    impl Weights {
        fn get(&self, name: &str) -> &[f32] {
            &self.tensors.iter().find(|t| t.0 == name).unwrap().2
        }
    }

    fn weights() -> Weights {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut t = Vec::new();
        let (q, kv) = (HEADS * HD, KV_HEADS * HD);
        t.push((
            "token_embd.weight".into(),
            vec![VOCAB, DIM],
            r.vec(VOCAB * DIM, 0.6, 0.0),
        ));
        for l in 0..LAYERS {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            for (name, rows, cols, scale) in [
                ("attn_q", q, DIM, 0.5),
                ("attn_k", kv, DIM, 0.5),
                ("attn_v", kv, DIM, 0.5),
                ("attn_output", DIM, q, 0.3),
                ("ffn_gate", FFN, DIM, 0.5),
                ("ffn_up", FFN, DIM, 0.5),
                ("ffn_down", DIM, FFN, 0.3),
            ] {
                t.push((n(name), vec![rows, cols], r.vec(rows * cols, scale, 0.0)));
            }
            for (name, len) in [
                ("attn_norm", DIM),
                ("attn_q_norm", HD),
                ("attn_k_norm", HD),
                ("post_attention_norm", DIM),
                ("ffn_norm", DIM),
                ("post_ffw_norm", DIM),
            ] {
                t.push((n(name), vec![len], r.vec(len, 0.5, 1.0)));
            }
        }
        t.push(("output_norm.weight".into(), vec![DIM], r.vec(DIM, 0.5, 1.0)));
        Weights { tensors: t }
    }

    fn gguf(w: &Weights, edit: impl FnOnce(GgufWriter) -> GgufWriter) -> GgufFile {
        let u32v = |v: usize| Value::U32(v as u32);
        let mut g = GgufWriter::new()
            .kv("general.architecture", Value::String("gemma3".into()))
            .kv("gemma3.block_count", u32v(LAYERS))
            .kv("gemma3.context_length", u32v(CTX))
            .kv("gemma3.embedding_length", u32v(DIM))
            .kv("gemma3.feed_forward_length", u32v(FFN))
            .kv("gemma3.attention.head_count", u32v(HEADS))
            .kv("gemma3.attention.head_count_kv", u32v(KV_HEADS))
            .kv("gemma3.attention.key_length", u32v(HD))
            .kv("gemma3.attention.value_length", u32v(HD))
            .kv("gemma3.attention.layer_norm_rms_epsilon", Value::F32(EPS))
            .kv("gemma3.rope.freq_base", Value::F32(1000.0))
            .kv("gemma3.rope.scaling.factor", Value::F32(2.0))
            .kv("gemma3.attention.sliding_window", u32v(WINDOW))
            .kv("gemma3.attention.sliding_window_pattern", u32v(2))
            .kv("gemma3.final_logit_softcapping", Value::F32(CAP));
        for (name, dims, data) in &w.tensors {
            let gdims: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            g = g.tensor(name, &gdims, GgmlType::F32, bytes);
        }
        GgufFile::from_bytes(edit(g).build()).unwrap()
    }

    fn model() -> Arc<DecoderModel> {
        Arc::new(DecoderModel::from_gguf(gguf(&weights(), |g| g)).unwrap())
    }

    /// An engine with an f32 KV cache (exact against the reference).
    fn engine(m: &Arc<DecoderModel>, batch: usize) -> DecoderEngine {
        engine_kv(m, batch, KvCacheType::F32)
    }

    fn engine_kv(m: &Arc<DecoderModel>, batch: usize, kv_cache: KvCacheType) -> DecoderEngine {
        DecoderEngine::new(
            m.clone(),
            &EngineOptions {
                context_length: CTX,
                batch,
                kv_cache,
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn matvec(w: &[f32], rows: usize, x: &[f32]) -> Vec<f32> {
        let cols = x.len();
        (0..rows)
            .map(|r| {
                w[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    fn norm(x: &[f32], w: &[f32]) -> Vec<f32> {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let inv = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(w).map(|(v, w)| v * inv * w).collect()
    }

    /// NeoX RoPE of one head at position `p`, computed directly.
    fn rope(h: &mut [f32], p: usize, theta: f64, scale: f64) {
        let half = h.len() / 2;
        for i in 0..half {
            let a = p as f64 * scale * theta.powf(-2.0 * i as f64 / h.len() as f64);
            let (c, s) = (a.cos() as f32, a.sin() as f32);
            let (x, y) = (h[i], h[i + half]);
            h[i] = x * c - y * s;
            h[i + half] = x * s + y * c;
        }
    }

    /// Logits after every token, recomputing everything from scratch.
    fn reference(w: &Weights, tokens: &[u32]) -> Vec<f32> {
        let t_len = tokens.len();
        let e = w.get("token_embd.weight");
        let mut x: Vec<Vec<f32>> = tokens
            .iter()
            .map(|&t| {
                e[t as usize * DIM..(t as usize + 1) * DIM]
                    .iter()
                    .map(|v| v * (DIM as f32).sqrt())
                    .collect()
            })
            .collect();
        for l in 0..LAYERS {
            let g = |s: &str| w.get(&format!("blk.{l}.{s}.weight"));
            let sliding = l % 2 == 0;
            let (theta, scale) = if sliding {
                (10_000.0, 1.0)
            } else {
                (1000.0, 0.5)
            };
            let mut qs = Vec::new();
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (p, xt) in x.iter().enumerate() {
                let h = norm(xt, g("attn_norm"));
                let mut q = matvec(g("attn_q"), HEADS * HD, &h);
                let mut k = matvec(g("attn_k"), KV_HEADS * HD, &h);
                for hq in q.chunks_mut(HD) {
                    let n = norm(hq, g("attn_q_norm"));
                    hq.copy_from_slice(&n);
                    rope(hq, p, theta, scale);
                }
                for hk in k.chunks_mut(HD) {
                    let n = norm(hk, g("attn_k_norm"));
                    hk.copy_from_slice(&n);
                    rope(hk, p, theta, scale);
                }
                qs.push(q);
                ks.push(k);
                vs.push(matvec(g("attn_v"), KV_HEADS * HD, &h));
            }
            for p in 0..t_len {
                let mut att = vec![0f32; HEADS * HD];
                for h in 0..HEADS {
                    let kvh = h / (HEADS / KV_HEADS);
                    let visible: Vec<usize> =
                        (0..=p).filter(|&s| !sliding || p - s < WINDOW).collect();
                    let sc: Vec<f32> = visible
                        .iter()
                        .map(|&s| {
                            let d: f32 = qs[p][h * HD..(h + 1) * HD]
                                .iter()
                                .zip(&ks[s][kvh * HD..(kvh + 1) * HD])
                                .map(|(a, b)| a * b)
                                .sum();
                            d / (HD as f32).sqrt()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let ex: Vec<f32> = sc.iter().map(|v| (v - m).exp()).collect();
                    let z: f32 = ex.iter().sum();
                    for (&s, e) in visible.iter().zip(&ex) {
                        for d in 0..HD {
                            att[h * HD + d] += e / z * vs[s][kvh * HD + d];
                        }
                    }
                }
                let o = norm(
                    &matvec(g("attn_output"), DIM, &att),
                    g("post_attention_norm"),
                );
                x[p].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let h = norm(&x[p], g("ffn_norm"));
                let gate = matvec(g("ffn_gate"), FFN, &h);
                let up = matvec(g("ffn_up"), FFN, &h);
                let act: Vec<f32> = gate
                    .iter()
                    .zip(&up)
                    .map(|(&a, &u)| {
                        let c = (2.0 / std::f32::consts::PI).sqrt();
                        0.5 * a * (1.0 + (c * (a + 0.044715 * a * a * a)).tanh()) * u
                    })
                    .collect();
                let d = norm(&matvec(g("ffn_down"), DIM, &act), g("post_ffw_norm"));
                x[p].iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            }
        }
        x.iter()
            .flat_map(|xt| {
                let h = norm(xt, w.get("output_norm.weight"));
                matvec(e, VOCAB, &h)
                    .into_iter()
                    .map(|v| CAP * (v / CAP).tanh())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    fn tokens(n: usize) -> Vec<u32> {
        (0..n as u32).map(|i| (i * 7 + 3) % VOCAB as u32).collect()
    }

    #[test]
    fn config_reads_the_gemma_keys() {
        let m = model();
        let c = m.config();
        assert_eq!(c.arch, Architecture::Gemma3);
        assert_eq!((c.q_dim(), c.kv_dim(), c.head_dim), (64, 32, 32));
        assert_eq!(c.sliding_window, Some(WINDOW));
        assert_eq!(
            (0..3).map(|l| c.is_sliding(l)).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(
            (c.rope_theta, c.rope_theta_local, c.rope_scale),
            (1000.0, 10_000.0, 0.5)
        );
        assert_eq!(c.final_softcap, Some(CAP));
        assert_eq!(c.activation, Activation::GeluTanh);
        assert_eq!(c.rope_style, RopeStyle::Neox);
    }

    #[test]
    fn matches_the_naive_reference_far_past_the_window_in_every_batching() {
        let w = weights();
        let m = model();
        let toks = tokens(CTX);
        let want = reference(&w, &toks);
        for batch in [1, 3, 8, CTX] {
            let got = engine(&m, batch).forward_all(&toks).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 2e-4, "batch {batch}: {d}");
        }
        // Decoding one token at a time after a batched prompt.
        let mut e = engine(&m, 8);
        let mut got = e.forward_all(&toks[..13]).unwrap();
        for &t in &toks[13..] {
            got.extend_from_slice(e.forward(&[t]).unwrap());
        }
        assert!(max_diff(&got, &want) < 2e-4);
        // The window matters: position 20 differs from a model where it is wider.
        let wide = Arc::new(
            DecoderModel::from_gguf(gguf(&w, |mut g| {
                let k = g
                    .metadata
                    .iter()
                    .position(|(k, _)| k == "gemma3.attention.sliding_window")
                    .unwrap();
                g.metadata[k].1 = Value::U32(CTX as u32);
                g
            }))
            .unwrap(),
        );
        let other = engine(&wide, 8).forward_all(&toks).unwrap();
        assert!(
            max_diff(
                &other[20 * VOCAB..21 * VOCAB],
                &want[20 * VOCAB..21 * VOCAB]
            ) > 1e-3
        );
    }

    #[test]
    fn an_f16_cache_halves_the_memory_and_stays_near_the_reference() {
        let w = weights();
        let m = model();
        let toks = tokens(CTX);
        let want = reference(&w, &toks);
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for batch in [1, 8] {
            let mut e = engine_kv(&m, batch, KvCacheType::F16);
            assert_eq!(2 * e.kv_cache_bytes(), engine(&m, batch).kv_cache_bytes());
            let got = e.forward_all(&toks).unwrap();
            // Keys and values rounded to 11 significant bits: ~5e-4 relative per value.
            let d = max_diff(&got, &want);
            assert!(
                d < 1e-2 * scale,
                "batch {batch}: {d} (logits up to {scale})"
            );
            assert!(d > 0.0, "the f16 cache should round something");
        }
    }

    #[test]
    fn a_q8_0_cache_takes_17_of_64_and_stays_near_the_reference() {
        let w = weights();
        let m = model();
        let toks = tokens(CTX);
        let want = reference(&w, &toks);
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for batch in [1, 8] {
            let mut e = engine_kv(&m, batch, KvCacheType::Q8_0);
            // 34 bytes per 32 values against 128 in f32.
            assert_eq!(
                64 * e.kv_cache_bytes(),
                17 * engine(&m, batch).kv_cache_bytes()
            );
            assert_eq!(
                m.config().kv_cache_bytes(CTX, batch, KvCacheType::Q8_0),
                e.kv_cache_bytes()
            );
            let got = e.forward_all(&toks).unwrap();
            // Values rounded to 8 bits per block of 32: ~0.4 % of the block's largest.
            let d = max_diff(&got, &want);
            assert!(
                d < 5e-2 * scale,
                "batch {batch}: {d} (logits up to {scale})"
            );
            assert!(d > 0.0, "the q8_0 cache should round something");
            // A batch sees the same cache as one token at a time (same quantized rows, same
            // kernels): the batched and the incremental logits agree closely.
            let mut one = engine_kv(&m, 1, KvCacheType::Q8_0);
            let inc = one.forward_all(&toks).unwrap();
            assert!(max_diff(&got, &inc) < 1e-3 * scale);
        }
    }

    #[test]
    fn sliding_layers_keep_only_their_window() {
        let m = model();
        let e = engine(&m, 8);
        let kv = HD * KV_HEADS * 4 * 2;
        // Layers 0 and 2 keep window + batch = 12 positions, layer 1 all 40.
        assert_eq!(e.kv_cache_bytes(), kv * (12 + CTX + 12));
        assert_eq!(
            m.config().kv_cache_bytes(CTX, 8, KvCacheType::F32),
            e.kv_cache_bytes()
        );
    }

    #[test]
    fn truncate_within_the_ring_reuses_it_and_refuses_beyond() {
        let w = weights();
        let m = model();
        let toks = tokens(30);
        let want = reference(&w, &toks);
        let mut e = engine(&m, 4);
        e.forward_all(&toks[..28]).unwrap();
        // The ring holds 8 positions (20..28); the query at 24 needs 21..24: fine.
        e.truncate(24).unwrap();
        let got = e.forward_all(&toks[24..]).unwrap();
        assert!(max_diff(&got, &want[24 * VOCAB..]) < 2e-4);
        // Back to 10 would need 7..10, long overwritten.
        let err = e.truncate(10).unwrap_err().to_string();
        assert!(err.contains("sliding-window"), "{err}");
        assert_eq!(e.position(), 30);
        e.truncate(0).unwrap();
        let again = e.forward_all(&toks).unwrap();
        assert!(max_diff(&again, &want) < 2e-4);
    }

    #[test]
    fn bad_gemma_files_are_errors_naming_the_key_or_tensor() {
        let w = weights();
        let drop_tensor = |name: &'static str| {
            let g = gguf(&w, |mut g| {
                g.tensors.retain(|t| t.0 != name);
                g
            });
            DecoderModel::from_gguf(g).unwrap_err().to_string()
        };
        for t in ["blk.1.attn_q_norm.weight", "blk.2.post_ffw_norm.weight"] {
            let e = drop_tensor(t);
            assert!(e.contains(t), "{e}");
        }
        let set = |key: &'static str, v: Value| {
            let g = gguf(&w, |mut g| {
                let i = g.metadata.iter().position(|(k, _)| k == key).unwrap();
                g.metadata[i].1 = v;
                g
            });
            DecoderModel::from_gguf(g).unwrap_err().to_string()
        };
        let e = set(
            "gemma3.attention.sliding_window",
            Value::U32(CTX as u32 + 1),
        );
        assert!(
            e.contains("gemma3.attention.sliding_window") && e.contains("larger"),
            "{e}"
        );
        let e = set("gemma3.final_logit_softcapping", Value::F32(f32::NAN));
        assert!(e.contains("gemma3.final_logit_softcapping"), "{e}");
        let e = set("general.architecture", Value::String("mamba".into()));
        assert!(e.contains("`mamba`") && e.contains("llama, gemma3"), "{e}");
    }
}
