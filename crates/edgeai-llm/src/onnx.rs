//! [`OnnxDecoder`]: a decoder-only ONNX model with a KV cache, run through any graph backend's
//! [`Model`], as a [`LanguageModel`].
//!
//! The model follows the convention of Hugging Face Optimum / transformers.js exports (and of
//! `edgeai export-onnx`):
//!
//! | inputs | shape |
//! |---|---|
//! | `input_ids` (int64 or int32) | `[batch, sequence_length]` |
//! | `attention_mask` (optional, int64 or int32) | `[batch, past + sequence_length]` |
//! | `position_ids` (optional, int64 or int32) | `[batch, sequence_length]` |
//! | `past_key_values.{i}.key` / `.value`, `i` in `0..layers` | `[batch, kv_heads, past, head_dim]` |
//!
//! | outputs | shape |
//! |---|---|
//! | `logits` (f32 or f16) | `[batch, sequence_length, vocab]` |
//! | `present.{i}.key` / `.value` | `[batch, kv_heads, past + sequence_length, head_dim]` |
//!
//! The batch is 1. `kv_heads` and `head_dim` must be fixed in the model's specs (they are in
//! exported decoders); the vocabulary size comes from the `logits` spec or, where that is
//! symbolic, from [`OnnxDecoderOptions::vocab_size`].
//!
//! Bad tokens and a full context are errors that leave the state as it was (as for every
//! engine); a run the backend fails, or outputs off the convention, are errors after which the
//! context is empty (the cache went into the failed run).
//!
//! # Where the cache lives, and what a step costs
//! The decoder runs through [`Model::run_values`] and asks for the `present.*` outputs in the
//! backend's own form ([`edgeai_core::Value::Backend`]); the next run takes them back as its
//! `past_key_values.*` as they are. On ONNX Runtime (`OrtValue`s) and tract (reference-counted
//! tensors) the cache therefore never leaves the engine between tokens: a step copies only
//! the ids in and the logits out (the graph's own `Concat` of past and new keys is the
//! engine's business). [`OnnxDecoder::cache_backend`] says where the cache is.
//!
//! Backends without values of their own (candle, burn today) hand back host tensors, so each
//! run moves the whole cache through the call: the backend copies the past into its own
//! tensors and the presents back out. For SmolLM2-135M (30 layers, 3 KV heads of 64) that is
//! 46 KB per cached token in each direction with an f32 cache, about 9 MB per step at 200
//! tokens: small next to the 540 MB of f32 weights a step reads, but it grows with the
//! context. [`OnnxDecoderOptions::host_cache`] forces that path on every backend (to measure
//! the difference; `benches/llm.rs` does).

use std::any::Any;

use edgeai_core::half::{bf16, f16};
use edgeai_core::{DType, Dim, Element, Model, Tensor, TensorData, TensorSpec, Value};

use crate::engine::{check_tokens, LanguageModel};
use crate::{Error, Result};

/// Options of an [`OnnxDecoder`].
#[derive(Debug, Clone, Default)]
pub struct OnnxDecoderOptions {
    /// Most tokens the cache holds (prompt and reply). `0`: 2048.
    pub context_length: usize,
    /// The vocabulary size, where the model's `logits` spec leaves it symbolic.
    pub vocab_size: Option<usize>,
    /// The engine's name as [`LanguageModel::name`] reports it (default `onnx:<backend>`).
    pub name: Option<String>,
    /// Keep the cache in host tensors, copied through every run, even where the backend
    /// could keep it in its own values (see the [module docs](self); for comparisons).
    pub host_cache: bool,
}

/// What one model input is fed with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Ids(DType),
    Mask(DType),
    Positions(DType),
    /// Index into the cache (`2 * layer` for keys, `2 * layer + 1` for values).
    Past(usize),
}

/// A decoder-only ONNX model with its KV cache, as a [`LanguageModel`] (see the
/// [module docs](self) for the input and output convention and what a step costs).
pub struct OnnxDecoder {
    model: Box<dyn Model>,
    name: String,
    slots: Vec<Slot>,
    /// Output index of `logits`.
    logits_out: usize,
    /// Output index of each cache entry's present (same order as `past`).
    present_out: Vec<usize>,
    /// Per output: whether to ask for it in the backend's own form.
    keep: Vec<bool>,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context: usize,
    cache_dtype: DType,
    /// The cache: `2 * layers` values `[1, kv_heads, position, head_dim]`.
    past: Vec<Value>,
    pos: usize,
    logits: Vec<f32>,
}

impl std::fmt::Debug for OnnxDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDecoder")
            .field("name", &self.name)
            .field("layers", &self.layers)
            .field("kv_heads", &self.kv_heads)
            .field("head_dim", &self.head_dim)
            .field("vocab", &self.vocab)
            .field("context", &self.context)
            .field("position", &self.pos)
            .finish()
    }
}

fn bad(what: impl Into<String>) -> Error {
    Error::Unsupported(format!("ONNX decoder: {}", what.into()))
}

fn int_dtype(spec: &TensorSpec) -> Result<DType> {
    match spec.dtype {
        DType::I64 | DType::I32 => Ok(spec.dtype),
        other => Err(bad(format!(
            "input `{}` is {other}, expected int64 or int32",
            spec.name
        ))),
    }
}

fn fixed(spec: &TensorSpec, axis: usize, what: &str) -> Result<usize> {
    match spec.shape.as_deref() {
        Some(dims) if dims.len() == 4 => match &dims[axis] {
            Dim::Fixed(n) if *n > 0 => Ok(*n),
            d => Err(bad(format!(
                "`{}` {}: dimension {axis} ({what}) must be fixed, it is `{d}`",
                spec.name,
                spec.shape_string()
            ))),
        },
        _ => Err(bad(format!(
            "`{}` has shape {}, expected [batch, kv_heads, past, head_dim]",
            spec.name,
            spec.shape_string()
        ))),
    }
}

/// Parses `past_key_values.{i}.key|value` / `present.{i}.key|value` into the cache index.
fn cache_index(name: &str, prefix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, kind) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    match kind {
        "key" => Some(2 * layer),
        "value" => Some(2 * layer + 1),
        _ => None,
    }
}

fn cache_name(index: usize, prefix: &str) -> String {
    let kind = if index.is_multiple_of(2) {
        "key"
    } else {
        "value"
    };
    format!("{prefix}{}.{kind}", index / 2)
}

impl OnnxDecoder {
    /// Wraps a loaded model, discovering the layers, KV heads, head width and vocabulary from
    /// its specs; a model that does not follow the convention is an error naming what is
    /// missing or wrong.
    pub fn new(model: Box<dyn Model>, opts: &OnnxDecoderOptions) -> Result<Self> {
        let mut slots = Vec::with_capacity(model.inputs().len());
        let mut past_specs: Vec<(usize, &TensorSpec)> = Vec::new();
        for spec in model.inputs() {
            let slot = match spec.name.as_str() {
                "input_ids" => Slot::Ids(int_dtype(spec)?),
                "attention_mask" => Slot::Mask(int_dtype(spec)?),
                "position_ids" => Slot::Positions(int_dtype(spec)?),
                name => match cache_index(name, "past_key_values.") {
                    Some(i) => {
                        past_specs.push((i, spec));
                        Slot::Past(i)
                    }
                    None => {
                        return Err(bad(format!(
                            "input `{name}` is not one of input_ids, attention_mask, \
                             position_ids, past_key_values.{{i}}.key/value"
                        )))
                    }
                },
            };
            if slots.contains(&slot) {
                return Err(bad(format!("input `{}` appears twice", spec.name)));
            }
            slots.push(slot);
        }
        if !slots.iter().any(|s| matches!(s, Slot::Ids(_))) {
            return Err(bad("the model has no `input_ids` input"));
        }
        if past_specs.is_empty() {
            return Err(bad(
                "the model has no `past_key_values.{i}.key` inputs: not a decoder with a KV cache",
            ));
        }
        past_specs.sort_by_key(|(i, _)| *i);
        let entries = past_specs.last().map_or(0, |(i, _)| i + 1);
        let layers = entries.div_ceil(2);
        for i in 0..2 * layers {
            if past_specs.get(i).map(|(j, _)| *j) != Some(i) {
                return Err(bad(format!(
                    "missing input `{}` (the model has {layers} layers)",
                    cache_name(i, "past_key_values.")
                )));
            }
        }
        let first = past_specs[0].1;
        let kv_heads = fixed(first, 1, "kv_heads")?;
        let head_dim = fixed(first, 3, "head_dim")?;
        let cache_dtype = first.dtype;
        if !matches!(cache_dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(bad(format!(
                "`{}` is {cache_dtype}; the cache must be f32, f16 or bf16",
                first.name
            )));
        }
        for (_, spec) in &past_specs {
            let (h, d) = (fixed(spec, 1, "kv_heads")?, fixed(spec, 3, "head_dim")?);
            if (h, d) != (kv_heads, head_dim) || spec.dtype != cache_dtype {
                return Err(bad(format!(
                    "`{}` is {} {}, `{}` is {} {}: every past must match",
                    spec.name,
                    spec.dtype,
                    spec.shape_string(),
                    first.name,
                    cache_dtype,
                    first.shape_string()
                )));
            }
        }

        let outputs = model.outputs();
        let find = |name: &str| outputs.iter().position(|s| s.name == name);
        let logits_out = find("logits").ok_or_else(|| bad("the model has no `logits` output"))?;
        let logits_spec = &outputs[logits_out];
        if !matches!(logits_spec.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(bad(format!(
                "`logits` is {}, expected a float type",
                logits_spec.dtype
            )));
        }
        let spec_vocab = match logits_spec.shape.as_deref() {
            Some([.., Dim::Fixed(v)]) => Some(*v),
            _ => None,
        };
        let vocab = match (spec_vocab, opts.vocab_size) {
            (Some(v), Some(o)) if v != o => {
                return Err(bad(format!(
                    "`logits` {} has {v} entries per token, the options say {o}",
                    logits_spec.shape_string()
                )))
            }
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => {
                return Err(bad(format!(
                    "`logits` {} leaves the vocabulary size symbolic: pass it in the options",
                    logits_spec.shape_string()
                )))
            }
        };
        let mut present_out = Vec::with_capacity(2 * layers);
        for i in 0..2 * layers {
            let name = cache_name(i, "present.");
            let j = find(&name).ok_or_else(|| bad(format!("missing output `{name}`")))?;
            if outputs[j].dtype != cache_dtype {
                return Err(bad(format!(
                    "output `{name}` is {}, its past is {cache_dtype}",
                    outputs[j].dtype
                )));
            }
            present_out.push(j);
        }
        let mut keep = vec![false; outputs.len()];
        if !opts.host_cache {
            for &j in &present_out {
                keep[j] = true;
            }
        }
        let context = if opts.context_length == 0 {
            2048
        } else {
            opts.context_length
        };
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| format!("onnx:{}", model.backend()));
        tracing::debug!(
            name,
            layers,
            kv_heads,
            head_dim,
            vocab,
            context,
            "ONNX decoder ready"
        );
        let mut me = Self {
            model,
            name,
            slots,
            logits_out,
            present_out,
            keep,
            layers,
            kv_heads,
            head_dim,
            vocab,
            context,
            cache_dtype,
            past: Vec::new(),
            pos: 0,
            logits: Vec::new(),
        };
        me.reset();
        Ok(me)
    }

    /// Decoder layers (pairs of cache tensors).
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Key/value heads per layer.
    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The backend that runs the model.
    pub fn backend(&self) -> &str {
        self.model.backend()
    }

    /// Bytes the cache holds now.
    pub fn kv_cache_bytes(&self) -> usize {
        self.past.iter().map(Value::byte_len).sum()
    }

    /// The backend holding the cache in its own values, or `None` when the cache is in host
    /// tensors (empty, after [`LanguageModel::truncate`], with
    /// [`OnnxDecoderOptions::host_cache`], or on a backend without values of its own).
    pub fn cache_backend(&self) -> Option<&str> {
        self.past.first().and_then(Value::backend)
    }

    fn empty_cache(&self) -> Vec<Value> {
        (0..2 * self.layers)
            .map(|_| {
                Value::Host(
                    Tensor::zeros(self.cache_dtype, [1, self.kv_heads, 0, self.head_dim])
                        .expect("an empty tensor always fits"),
                )
            })
            .collect()
    }

    /// One run over `tokens`; returns the logits tensor as f32 `[n, vocab]` values.
    fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        check_tokens(tokens, self.pos, self.context, self.vocab)?;
        let n = tokens.len();
        let total = self.pos + n;
        let ints = |dtype: DType, shape: [usize; 2], values: &mut dyn Iterator<Item = usize>| {
            match dtype {
                DType::I32 => Tensor::from_vec(shape, values.map(|v| v as i32).collect()),
                _ => Tensor::from_vec(shape, values.map(|v| v as i64).collect()),
            }
        };
        let mut past: Vec<Option<Value>> = std::mem::take(&mut self.past)
            .into_iter()
            .map(Some)
            .collect();
        let mut inputs = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            inputs.push(match *slot {
                Slot::Ids(dt) => ints(dt, [1, n], &mut tokens.iter().map(|&t| t as usize))?.into(),
                Slot::Mask(dt) => ints(dt, [1, total], &mut std::iter::repeat_n(1, total))?.into(),
                Slot::Positions(dt) => ints(dt, [1, n], &mut (self.pos..total))?.into(),
                Slot::Past(i) => past[i].take().expect("each cache entry feeds one input"),
            });
        }
        // The cache went into the run: whatever happens, the state is rebuilt below.
        let result = self.model.run_values(inputs, &self.keep);
        let mut outputs = match result {
            Ok(o) => o,
            Err(e) => {
                self.reset();
                return Err(e.into());
            }
        };
        let checked = self.take_outputs(&mut outputs, n, total);
        match checked {
            Ok((logits, cache)) => {
                self.past = cache;
                self.pos = total;
                Ok(logits)
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    fn take_outputs(
        &self,
        outputs: &mut [Value],
        n: usize,
        total: usize,
    ) -> Result<(Vec<f32>, Vec<Value>)> {
        let want_cache = [1, self.kv_heads, total, self.head_dim];
        let mut cache = Vec::with_capacity(self.present_out.len());
        for (i, &j) in self.present_out.iter().enumerate() {
            let t = std::mem::replace(&mut outputs[j], Value::Host(Tensor::scalar(0f32)));
            if t.shape() != want_cache || t.dtype() != self.cache_dtype {
                return Err(bad(format!(
                    "output `{}` is {} {:?}, expected {} {want_cache:?}",
                    cache_name(i, "present."),
                    t.dtype(),
                    t.shape(),
                    self.cache_dtype
                )));
            }
            cache.push(t);
        }
        let logits = std::mem::replace(
            &mut outputs[self.logits_out],
            Value::Host(Tensor::scalar(0f32)),
        )
        .into_tensor()?;
        let want = [1, n, self.vocab];
        if logits.shape() != want {
            return Err(bad(format!(
                "output `logits` has shape {:?}, expected {want:?}",
                logits.shape()
            )));
        }
        let values = match logits.into_parts().1 {
            TensorData::F32(v) => v,
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            other => {
                return Err(bad(format!(
                    "output `logits` is {}, expected a float type",
                    other.dtype()
                )))
            }
        };
        Ok((values, cache))
    }
}

/// The first `len` positions of a `[1, heads, positions, width]` cache tensor.
fn narrow<T: Element + Copy>(t: &Tensor, len: usize) -> Result<Tensor> {
    let s = t.shape();
    let (heads, positions, width) = (s[1], s[2], s[3]);
    let data = t.as_slice::<T>()?;
    let mut out = Vec::with_capacity(heads * len * width);
    for h in 0..heads {
        let start = h * positions * width;
        out.extend_from_slice(&data[start..start + len * width]);
    }
    Ok(Tensor::from_vec([1, heads, len, width], out)?)
}

impl LanguageModel for OnnxDecoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn reset(&mut self) {
        self.past = self.empty_cache();
        self.pos = 0;
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.pos {
            return Err(Error::InvalidArgument(format!(
                "truncate to {len} tokens: only {} are in the context",
                self.pos
            )));
        }
        if len == self.pos {
            return Ok(());
        }
        let cut = self
            .past
            .iter()
            .map(|v| {
                // A backend's value is read through a host copy: truncation is rare (an
                // edited chat history), a step is not.
                let copy;
                let t = match v {
                    Value::Host(t) => t,
                    Value::Backend(b) => {
                        copy = b.to_tensor()?;
                        &copy
                    }
                };
                match self.cache_dtype {
                    DType::F16 => narrow::<f16>(t, len),
                    DType::BF16 => narrow::<bf16>(t, len),
                    _ => narrow::<f32>(t, len),
                }
                .map(Value::Host)
            })
            .collect::<Result<Vec<_>>>()?;
        self.past = cut;
        self.pos = len;
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        let all = self.run(tokens)?;
        let n = tokens.len();
        self.logits.clear();
        self.logits
            .extend_from_slice(&all[(n - 1) * self.vocab..n * self.vocab]);
        Ok(&self.logits)
    }

    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.run(tokens)
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} layers, {} KV heads x {}, {} cache)",
            self.name, self.layers, self.kv_heads, self.head_dim, self.cache_dtype
        )
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
