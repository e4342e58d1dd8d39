//! The decoder's cache plumbing against a mock model that follows the convention: each run
//! checks the mask and positions it is given and appends one key/value entry per token, and
//! the logits pick `(sum of every cached and new token + position) % VOCAB`, so a lost,
//! duplicated or mis-truncated cache entry changes the prediction.

use super::*;
use edgeai_core::{Dim, TensorSpec};

const VOCAB: usize = 7;
const HEADS: usize = 2;
const WIDTH: usize = 3;

fn spec(name: &str, dtype: DType, dims: &[Dim]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: Some(dims.to_vec()),
    }
}

fn sym(s: &str) -> Dim {
    Dim::Symbolic(s.into())
}

struct Mock {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    layers: usize,
    /// Whether `run_values` keeps outputs as [`MockValue`]s (a backend with values of its
    /// own), and how many of them came back as inputs.
    own_values: bool,
    taken_back: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A backend value of the mock: the host tensor inside, taken back without a copy.
#[derive(Debug)]
struct MockValue(Tensor);

impl edgeai_core::BackendValue for MockValue {
    fn backend(&self) -> &str {
        "mock"
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn to_tensor(&self) -> edgeai_core::Result<Tensor> {
        Ok(self.0.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
        self
    }
}

impl Mock {
    fn new(layers: usize) -> Self {
        let past_dims = [
            sym("batch"),
            Dim::Fixed(HEADS),
            sym("past"),
            Dim::Fixed(WIDTH),
        ];
        let present_dims = [
            sym("batch"),
            Dim::Fixed(HEADS),
            sym("total"),
            Dim::Fixed(WIDTH),
        ];
        let mut inputs = vec![
            spec("input_ids", DType::I64, &[sym("batch"), sym("seq")]),
            spec("attention_mask", DType::I64, &[sym("batch"), sym("total")]),
            spec("position_ids", DType::I64, &[sym("batch"), sym("seq")]),
        ];
        let mut outputs = vec![spec(
            "logits",
            DType::F32,
            &[sym("batch"), sym("seq"), Dim::Fixed(VOCAB)],
        )];
        for l in 0..layers {
            for kind in ["key", "value"] {
                inputs.push(spec(
                    &format!("past_key_values.{l}.{kind}"),
                    DType::F32,
                    &past_dims,
                ));
                outputs.push(spec(
                    &format!("present.{l}.{kind}"),
                    DType::F32,
                    &present_dims,
                ));
            }
        }
        Self {
            inputs,
            outputs,
            layers,
            own_values: false,
            taken_back: Default::default(),
        }
    }

    fn with_own_values(mut self) -> Self {
        self.own_values = true;
        self
    }
}

impl Model for Mock {
    fn backend(&self) -> &str {
        "mock"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run_values(&self, inputs: Vec<Value>, keep: &[bool]) -> edgeai_core::Result<Vec<Value>> {
        if !self.own_values {
            let inputs = inputs
                .into_iter()
                .map(Value::into_tensor)
                .collect::<edgeai_core::Result<Vec<_>>>()?;
            return Ok(self.run(inputs)?.into_iter().map(Value::Host).collect());
        }
        edgeai_core::check_keep(&self.outputs, keep)?;
        let inputs = inputs
            .into_iter()
            .map(|v| match v.downcast::<MockValue>() {
                Ok(own) => {
                    self.taken_back
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(own.0)
                }
                Err(other) => other.into_tensor(),
            })
            .collect::<edgeai_core::Result<Vec<_>>>()?;
        Ok(self
            .run(inputs)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if keep.get(i).copied().unwrap_or(false) {
                    Value::Backend(Box::new(MockValue(t)))
                } else {
                    Value::Host(t)
                }
            })
            .collect())
    }
    fn run(&self, inputs: Vec<Tensor>) -> edgeai_core::Result<Vec<Tensor>> {
        edgeai_core::validate_inputs(&self.inputs, &inputs)?;
        let ids = inputs[0].as_slice::<i64>()?.to_vec();
        let n = ids.len();
        let past_len = inputs[3].shape()[2];
        let mask = inputs[1].as_slice::<i64>()?;
        assert_eq!(mask.len(), past_len + n, "mask covers past and new tokens");
        assert!(mask.iter().all(|&m| m == 1));
        let positions = inputs[2].as_slice::<i64>()?;
        let want: Vec<i64> = (past_len as i64..(past_len + n) as i64).collect();
        assert_eq!(positions, want.as_slice(), "positions continue the past");
        // Every cache entry stores the token id in all its values.
        let cached: Vec<f32> = {
            let k = inputs[3].as_slice::<f32>()?;
            (0..past_len).map(|p| k[p * WIDTH]).collect()
        };
        let mut logits = vec![0f32; n * VOCAB];
        let mut sum: i64 = cached.iter().map(|&x| x as i64).sum();
        for (i, &t) in ids.iter().enumerate() {
            sum += t;
            let next = (sum + positions[i]) as usize % VOCAB;
            logits[i * VOCAB + next] = 1.0;
        }
        let mut out = vec![Tensor::from_vec([1, n, VOCAB], logits)?];
        for j in 0..2 * self.layers {
            let past = inputs[3 + j].as_slice::<f32>()?;
            let total = past_len + n;
            let mut v = Vec::with_capacity(HEADS * total * WIDTH);
            for h in 0..HEADS {
                v.extend_from_slice(&past[h * past_len * WIDTH..(h + 1) * past_len * WIDTH]);
                for &t in &ids {
                    v.extend(std::iter::repeat_n(t as f32, WIDTH));
                }
            }
            out.push(Tensor::from_vec([1, HEADS, total, WIDTH], v)?);
        }
        Ok(out)
    }
}

fn decoder(layers: usize) -> OnnxDecoder {
    OnnxDecoder::new(
        Box::new(Mock::new(layers)),
        &OnnxDecoderOptions {
            context_length: 16,
            ..Default::default()
        },
    )
    .unwrap()
}

fn expected_next(tokens: &[u32]) -> u32 {
    let sum: i64 = tokens.iter().map(|&t| t as i64).sum();
    ((sum + tokens.len() as i64 - 1) as usize % VOCAB) as u32
}

#[test]
fn discovers_the_shape_of_the_model() {
    let d = decoder(3);
    assert_eq!(
        (d.layers(), d.kv_heads(), d.head_dim(), d.vocab_size()),
        (3, HEADS, WIDTH, VOCAB)
    );
    assert_eq!(d.name(), "onnx:mock");
    assert_eq!(d.kv_cache_bytes(), 0);
}

#[test]
fn forward_feeds_the_cache_back_and_matches_one_run_over_everything() {
    let mut d = decoder(2);
    let tokens = [3u32, 1, 4, 1, 5, 2];
    let mut fed = Vec::new();
    // A prompt of 3, then one token at a time.
    let first = argmax(d.forward(&tokens[..3]).unwrap());
    fed.extend_from_slice(&tokens[..3]);
    assert_eq!(first, expected_next(&fed));
    for &t in &tokens[3..] {
        fed.push(t);
        let next = argmax(d.forward(&[t]).unwrap());
        assert_eq!(next, expected_next(&fed), "after {fed:?}");
    }
    assert_eq!(d.position(), tokens.len());
    assert_eq!(d.kv_cache_bytes(), 2 * 2 * HEADS * tokens.len() * WIDTH * 4);

    let mut all = decoder(2);
    let rows = all.forward_all(&tokens).unwrap();
    assert_eq!(rows.len(), tokens.len() * VOCAB);
    for i in 0..tokens.len() {
        assert_eq!(
            argmax(&rows[i * VOCAB..(i + 1) * VOCAB]),
            expected_next(&tokens[..=i])
        );
    }
}

#[test]
fn the_cache_stays_in_the_backend_values_between_runs() {
    for host_cache in [false, true] {
        let mock = Mock::new(2).with_own_values();
        let taken = mock.taken_back.clone();
        let mut d = OnnxDecoder::new(
            Box::new(mock),
            &OnnxDecoderOptions {
                context_length: 16,
                host_cache,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(d.cache_backend(), None, "an empty cache is on the host");
        let mut fed = vec![3u32, 1, 4];
        assert_eq!(argmax(d.forward(&fed).unwrap()), expected_next(&fed));
        for t in [1u32, 5, 2] {
            fed.push(t);
            assert_eq!(argmax(d.forward(&[t]).unwrap()), expected_next(&fed));
        }
        let load = std::sync::atomic::Ordering::Relaxed;
        if host_cache {
            assert_eq!(d.cache_backend(), None);
            assert_eq!(taken.load(load), 0);
        } else {
            assert_eq!(d.cache_backend(), Some("mock"));
            // Three decode steps took back all 4 cache values each, as they were.
            assert_eq!(taken.load(load), 3 * 4);
        }
        assert_eq!(d.kv_cache_bytes(), 2 * 2 * HEADS * fed.len() * WIDTH * 4);
        // Truncation reads the backend's values through a host copy; the cache goes on.
        d.truncate(4).unwrap();
        assert_eq!(d.cache_backend(), None);
        fed.truncate(4);
        fed.push(6);
        assert_eq!(argmax(d.forward(&[6]).unwrap()), expected_next(&fed));
        assert_eq!(d.cache_backend(), (!host_cache).then_some("mock"));
    }
}

#[test]
fn truncate_keeps_a_prefix_and_reset_forgets() {
    let mut d = decoder(1);
    d.forward(&[2, 6, 3, 5]).unwrap();
    d.truncate(2).unwrap();
    assert_eq!(d.position(), 2);
    let next = argmax(d.forward(&[1]).unwrap());
    assert_eq!(next, expected_next(&[2, 6, 1]));
    assert!(d.truncate(9).is_err());
    d.reset();
    assert_eq!(d.position(), 0);
    assert_eq!(argmax(d.forward(&[4]).unwrap()), expected_next(&[4]));
}

#[test]
fn bad_tokens_and_a_full_context_are_errors_that_keep_the_state() {
    let mut d = decoder(1);
    d.forward(&[1, 2]).unwrap();
    assert!(matches!(
        d.forward(&[VOCAB as u32]),
        Err(Error::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        d.forward(&[0; 15]),
        Err(Error::ContextOverflow { .. })
    ));
    assert!(d.forward(&[]).is_err());
    assert_eq!(d.position(), 2);
    assert_eq!(argmax(d.forward(&[3]).unwrap()), expected_next(&[1, 2, 3]));
}

fn error_of(mock: Mock) -> String {
    OnnxDecoder::new(Box::new(mock), &OnnxDecoderOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_model_off_the_convention_is_an_error_naming_what_is_wrong() {
    let mut m = Mock::new(2);
    m.outputs.retain(|s| s.name != "present.1.value");
    assert!(error_of(m).contains("missing output `present.1.value`"));

    let mut m = Mock::new(2);
    m.inputs.retain(|s| s.name != "past_key_values.0.value");
    assert!(error_of(m).contains("missing input `past_key_values.0.value`"));

    let mut m = Mock::new(1);
    m.inputs.retain(|s| !s.name.starts_with("past_key_values"));
    assert!(error_of(m).contains("not a decoder with a KV cache"));

    let mut m = Mock::new(1);
    m.inputs[3].shape = Some(vec![sym("b"), sym("heads"), sym("p"), Dim::Fixed(WIDTH)]);
    assert!(error_of(m).contains("kv_heads"));

    let mut m = Mock::new(1);
    m.outputs.retain(|s| s.name != "logits");
    assert!(error_of(m).contains("no `logits` output"));

    let mut m = Mock::new(1);
    m.outputs[0].shape = Some(vec![sym("b"), sym("s"), sym("vocab")]);
    assert!(error_of(m).contains("vocabulary size symbolic"));

    let mut m = Mock::new(1);
    m.inputs
        .push(spec("token_type_ids", DType::I64, &[sym("b"), sym("s")]));
    assert!(error_of(m).contains("token_type_ids"));

    let mut m = Mock::new(1);
    m.inputs[0].dtype = DType::F32;
    assert!(error_of(m).contains("expected int64 or int32"));
}

/// A model whose presents come back with the wrong length: an error, and the state resets.
struct ShortPresent(Mock);

impl Model for ShortPresent {
    fn backend(&self) -> &str {
        "mock"
    }
    fn inputs(&self) -> &[TensorSpec] {
        self.0.inputs()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.0.outputs()
    }
    fn run(&self, inputs: Vec<Tensor>) -> edgeai_core::Result<Vec<Tensor>> {
        let mut out = self.0.run(inputs)?;
        out[1] = Tensor::zeros(DType::F32, [1, HEADS, 0, WIDTH])?;
        Ok(out)
    }
}

#[test]
fn a_present_of_the_wrong_shape_is_an_error_not_a_panic() {
    let mut d = OnnxDecoder::new(
        Box::new(ShortPresent(Mock::new(1))),
        &OnnxDecoderOptions::default(),
    )
    .unwrap();
    let e = d.forward(&[1, 2]).unwrap_err().to_string();
    assert!(e.contains("present.0.key"), "{e}");
    assert_eq!(d.position(), 0);
}

use crate::engine::argmax;

/// A byte-level BPE tokenizer of `n` tokens, from a GGUF with only the tokenizer's keys.
fn tokenizer_of(n: usize) -> crate::Tokenizer {
    use crate::gguf::{writer::GgufWriter, GgufFile, Value};
    let tokens = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let s = |v: &str| Value::String(v.into());
    let bytes = GgufWriter::new()
        .kv("general.architecture", s("llama"))
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(tokens[..n].iter().map(|t| s(t)).collect()),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array((0..n).map(|_| Value::I32(1)).collect()),
        )
        .kv("tokenizer.ggml.merges", Value::Array(vec![]))
        .build();
    crate::Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap()).unwrap()
}

#[test]
fn a_tokenizer_smaller_than_the_logits_is_refused() {
    let e = crate::Llm::new(Box::new(decoder(1)), tokenizer_of(VOCAB - 2), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the tokenizer has 5 tokens") && e.contains("scores 7"),
        "{e}"
    );
    let llm = crate::Llm::new(Box::new(decoder(1)), tokenizer_of(VOCAB), None).unwrap();
    assert_eq!(llm.engine.name(), "onnx:mock");
    assert!(llm.native().is_none());
}
