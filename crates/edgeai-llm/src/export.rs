//! Export of a llama-architecture GGUF to a decoder-only ONNX model in the layout of Hugging
//! Face Optimum / transformers.js (`decoder_model_merged.onnx` without the `use_cache_branch`
//! switch: the past is always an input, zero positions long on the first run).
//!
//! [`export_onnx`] writes four files into a folder:
//!
//! - `model.onnx`, opset [`OPSET`], weights dequantized to f32 and stored inside the file:
//!   - inputs, in order: `input_ids` int64 `[batch_size, sequence_length]`, `attention_mask`
//!     int64 `[batch_size, total_sequence_length]`, `position_ids` int64
//!     `[batch_size, sequence_length]`, then per layer `past_key_values.{i}.key` and
//!     `past_key_values.{i}.value`, f32 `[batch_size, kv_heads, past_sequence_length,
//!     head_dim]`;
//!   - outputs, in order: `logits` f32 `[batch_size, sequence_length, vocab]`, then per layer
//!     `present.{i}.key` / `present.{i}.value`, f32 `[batch_size, kv_heads,
//!     total_sequence_length, head_dim]`: the past with this run's keys (after RoPE) and
//!     values appended.
//! - `tokenizer.json`: the GGUF's byte-level BPE tokenizer (a SentencePiece vocabulary is
//!   skipped with a warning, see [`ExportReport::tokenizer_json`]).
//! - `tokenizer_config.json` (`chat_template`, `bos_token`, `eos_token`, `model_max_length`,
//!   `add_bos_token`) and `config.json` (the Hugging Face `LlamaConfig` keys).
//!
//! The graph, per layer: RMSNorm as `x / Sqrt(ReduceMean(x * x) + eps) * w`; Q/K/V as
//! `MatMul` with the transposed weights; RoPE in Hugging Face's rotate-half form from
//! `cos` / `sin` tables gathered by `position_ids` (the GGUF's Q/K rows, which llama.cpp's
//! converter interleaved for ggml's adjacent-pair RoPE, are put back into the half-split
//! order: attention is unchanged, as Q and K are permuted alike); grouped-query attention by
//! stacking the queries of each KV head, `[batch, kv_heads, group * seq, head_dim]`, against
//! its keys `[batch, kv_heads, total, head_dim]` (4-D `MatMul`s, no copy of the cache);
//! SwiGLU as `g * Sigmoid(g) * u`. The logits use the embedding through a `Transpose` node
//! when the output is tied (no second copy of the matrix), else `output.weight`.
//!
//! The attention mask follows Hugging Face: key `j` of the `total` keys is visible from query
//! `i` of the `sequence_length` new tokens when `attention_mask[b, j] == 1` and
//! `j <= past_sequence_length + i`. (Without padding that is "key position <= query
//! position"; `position_ids` only select the RoPE angles.) It is built from `Shape`, `Slice`,
//! `Gather`, `Cast`, `Sub`, `Clip`, `Add`, `Mul` on a constant `0..max_positions` ramp: no
//! `Range`, `Where`, comparison or boolean operators, which some backends lack.
//!
//! ```no_run
//! use edgeai_llm::export::{export_onnx, ExportOptions};
//! use edgeai_llm::gguf::GgufFile;
//!
//! let gguf = GgufFile::open("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let report = export_onnx(&gguf, "out/smollm2".as_ref(), &ExportOptions::default())?;
//! assert_eq!(report.layers, 30);
//! # Ok::<(), edgeai_llm::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgeai_core::quant::QMatrix;
use edgeai_onnx::build::{self, attr_int, attr_ints};
use edgeai_onnx::proto::{dt, AttributeProto, ModelProto, NodeProto, TensorProto};

use crate::decoder::{Architecture, DecoderConfig};
use crate::gguf::GgufFile;
use crate::{Error, Result, Tokenizer};

/// The ONNX opset the exported graph imports (Softmax, ReduceMean with the `axes` attribute,
/// Unsqueeze / Slice with tensor inputs).
pub const OPSET: i64 = 17;

/// Default cap on the RoPE table length ([`ExportOptions::max_positions`]).
pub const DEFAULT_MAX_POSITIONS: usize = 8192;

/// Largest protobuf ONNX runtimes accept (2 GiB); bigger models need external data.
const PROTOBUF_LIMIT: usize = (2 << 30) - (16 << 20);

/// The operator types an exported graph uses (default domain), sorted.
pub const OPS: &[&str] = &[
    "Add",
    "Cast",
    "Clip",
    "Concat",
    "Div",
    "Gather",
    "MatMul",
    "Mul",
    "ReduceMean",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// What [`export_onnx`] does.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Rows of the RoPE tables: the most positions the model can be run at. `None`: the
    /// GGUF's context length, capped at [`DEFAULT_MAX_POSITIONS`] (each position costs
    /// `2 * head_dim * 4` bytes plus 12 for the mask ramps).
    pub max_positions: Option<usize>,
}

impl ExportOptions {
    /// These options with the RoPE tables `n` positions long.
    pub fn with_max_positions(mut self, n: usize) -> Self {
        self.max_positions = Some(n);
        self
    }
}

/// What [`export_onnx`] wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportReport {
    /// Every file written, with its size in bytes (`model.onnx` first).
    pub files: Vec<(PathBuf, u64)>,
    /// Transformer blocks.
    pub layers: usize,
    /// The opset imported ([`OPSET`]).
    pub opset: i64,
    /// Rows of the RoPE tables (positions the model can run at).
    pub max_positions: usize,
    /// Weights stored (f32 values in initializers).
    pub parameters: usize,
    /// Whether the output projection reuses the embedding.
    pub tied_embeddings: bool,
    /// Whether `tokenizer.json` was written (not for a SentencePiece vocabulary, which has
    /// no `tokenizers` model to save).
    pub tokenizer_json: bool,
}

/// The exported graph and what describes it, before anything is written.
#[derive(Debug)]
pub struct OnnxExport {
    /// The model (weights inside).
    pub model: ModelProto,
    /// The decoder's hyper-parameters.
    pub config: DecoderConfig,
    /// Rows of the RoPE tables.
    pub max_positions: usize,
    /// f32 values in the initializers.
    pub parameters: usize,
    /// Whether the output projection reuses the embedding.
    pub tied_embeddings: bool,
}

/// Builds the ONNX graph of a llama-architecture GGUF (see the [module docs](self)) without
/// writing anything. Any other architecture is an [`Error::Unsupported`] saying so.
pub fn build_onnx(gguf: &GgufFile, opts: &ExportOptions) -> Result<OnnxExport> {
    let arch = gguf.get_str("general.architecture").unwrap_or("<none>");
    if arch != Architecture::Llama.name() {
        return Err(Error::Unsupported(format!(
            "export-onnx supports llama-architecture GGUFs; {arch} is not supported yet"
        )));
    }
    let c = DecoderConfig::from_gguf(gguf)?;
    if c.rope_dim != c.head_dim {
        return Err(Error::Unsupported(format!(
            "export-onnx: partial RoPE ({} of {} dimensions) is not supported yet",
            c.rope_dim, c.head_dim
        )));
    }
    let max_positions = opts
        .max_positions
        .unwrap_or(c.context_length.min(DEFAULT_MAX_POSITIONS));
    if max_positions == 0 || max_positions > 1 << 20 {
        return Err(Error::InvalidArgument(format!(
            "export-onnx: max_positions {max_positions} is outside 1..=1048576"
        )));
    }
    let (d, hd, nh, nkv) = (c.dim, c.head_dim, c.n_head, c.n_kv_head);
    let (qd, kvd, ffn, vocab) = (c.q_dim(), c.kv_dim(), c.ffn_dim, c.vocab);
    let group = nh / nkv;
    let tied = gguf.tensor("output.weight").is_none();
    // Rough size check before dequantizing anything.
    let weights = vocab * d * if tied { 1 } else { 2 }
        + c.n_layer * (2 * d * qd + 2 * d * kvd + 3 * d * ffn + 2 * d)
        + d;
    let bytes = 4 * (weights + 2 * max_positions * hd);
    if bytes > PROTOBUF_LIMIT {
        return Err(Error::Unsupported(format!(
            "export-onnx: {} MB of f32 weights exceed the 2 GB limit of one ONNX protobuf \
             (external data is not supported yet)",
            bytes >> 20
        )));
    }
    tracing::info!(
        origin = gguf.origin(),
        layers = c.n_layer,
        dim = d,
        heads = nh,
        kv_heads = nkv,
        vocab,
        tied,
        max_positions,
        "exporting to ONNX"
    );

    let mut g = Graph::default();
    let sym = build::sym;
    let fixed = |n: usize| build::fixed(n as i64);
    let mut inputs = vec![
        build::value(
            "input_ids",
            dt::INT64,
            &[sym("batch_size"), sym("sequence_length")],
        ),
        build::value(
            "attention_mask",
            dt::INT64,
            &[sym("batch_size"), sym("total_sequence_length")],
        ),
        build::value(
            "position_ids",
            dt::INT64,
            &[sym("batch_size"), sym("sequence_length")],
        ),
    ];
    let mut outputs = vec![build::value(
        "logits",
        dt::FLOAT,
        &[sym("batch_size"), sym("sequence_length"), fixed(vocab)],
    )];
    for i in 0..c.n_layer {
        for kind in ["key", "value"] {
            inputs.push(build::value(
                &format!("past_key_values.{i}.{kind}"),
                dt::FLOAT,
                &[
                    sym("batch_size"),
                    fixed(nkv),
                    sym("past_sequence_length"),
                    fixed(hd),
                ],
            ));
            outputs.push(build::value(
                &format!("present.{i}.{kind}"),
                dt::FLOAT,
                &[
                    sym("batch_size"),
                    fixed(nkv),
                    sym("total_sequence_length"),
                    fixed(hd),
                ],
            ));
        }
    }

    // Constants shared by every layer.
    let embed = g.weight(
        "model.embed_tokens.weight",
        &[vocab, d],
        matrix(gguf, "token_embd.weight", vocab, d)?,
    );
    let (cos, sin) = rope_tables(max_positions, hd, c.rope_theta);
    let cos = g.weight("model.rotary_emb.cos", &[max_positions, hd], cos);
    let sin = g.weight("model.rotary_emb.sin_signed", &[max_positions, hd], sin);
    let ramp: Vec<i64> = (0..max_positions as i64).collect();
    let ramp_i = g.add_init(build::tensor_i64(
        "model.positions",
        &[max_positions as i64],
        &ramp,
    ));
    let eps = g.scalar(c.rms_eps);
    let one = g.scalar(1.0);
    let zero = g.scalar(0.0);
    let neg = g.scalar(-1e9);

    // Sizes: S (new tokens), P (past), T = P + S, all int64 [1].
    g.scope = "/model".into();
    let ids_shape = g.node("Shape", &["input_ids"], vec![]);
    let i1 = g.ints(&[1]);
    let i2 = g.ints(&[2]);
    let s_len = g.node("Gather", &[&ids_shape, &i1], vec![attr_int("axis", 0)]);
    let past_shape = g.node("Shape", &["past_key_values.0.key"], vec![]);
    let p_len = g.node("Gather", &[&past_shape, &i2], vec![attr_int("axis", 0)]);
    let t_len = g.node("Add", &[&p_len, &s_len], vec![]);

    // Mask bias [B, 1, 1, S, T]: 0 where visible, -1e9 where not.
    let i0 = g.ints(&[0]);
    let key_idx = g.node("Slice", &[&ramp_i, &i0, &t_len, &i0], vec![]);
    let query_idx = g.node("Slice", &[&ramp_i, &p_len, &t_len, &i0], vec![]);
    let key_pos = g.node("Cast", &[&key_idx], vec![attr_int("to", dt::FLOAT as i64)]);
    let query_pos = g.node(
        "Cast",
        &[&query_idx],
        vec![attr_int("to", dt::FLOAT as i64)],
    );
    let query_col = g.node("Unsqueeze", &[&query_pos, &i1], vec![]);
    let ahead = g.node("Sub", &[&key_pos, &query_col], vec![]);
    let future = g.node("Clip", &[&ahead, &zero, &one], vec![]);
    let mask_f = g.node(
        "Cast",
        &["attention_mask"],
        vec![attr_int("to", dt::FLOAT as i64)],
    );
    // Re-indexed by the key ramp so its length is T as the graph computes it (some backends
    // do not know that `total_sequence_length` equals past + sequence).
    let mask_t = g.node("Gather", &[&mask_f, &key_idx], vec![attr_int("axis", 1)]);
    let padded = g.node("Sub", &[&one, &mask_t], vec![]);
    // [B, T] -> [B, 1, 1, T] one axis at a time: candle-onnx 0.11 checks each axis of an
    // Unsqueeze against the input's rank, so `axes = [1, 2]` fails there.
    let padded = g.node("Unsqueeze", &[&padded, &i1], vec![]);
    let padded = g.node("Unsqueeze", &[&padded, &i1], vec![]);
    let hidden = g.node("Add", &[&future, &padded], vec![]);
    let bias = g.node("Mul", &[&hidden, &neg], vec![]);
    // The queries of a KV group are stacked as rows `g * S + s`: the bias repeats per group.
    let bias = if group > 1 {
        let copies = vec![bias.as_str(); group];
        g.node("Concat", &copies, vec![attr_int("axis", 2)])
    } else {
        bias
    };

    // RoPE angles [B, S, 1, hd].
    let cos_g = g.node("Gather", &[&cos, "position_ids"], vec![attr_int("axis", 0)]);
    let sin_g = g.node("Gather", &[&sin, "position_ids"], vec![attr_int("axis", 0)]);
    let cos4 = g.node("Unsqueeze", &[&cos_g, &i2], vec![]);
    let sin4 = g.node("Unsqueeze", &[&sin_g, &i2], vec![]);

    let mut x = g.node("Gather", &[&embed, "input_ids"], vec![attr_int("axis", 0)]);
    let q_shape = g.ints(&[0, 0, nh as i64, hd as i64]);
    let kv_shape = g.ints(&[0, 0, nkv as i64, hd as i64]);
    let group_shape = g.ints(&[0, 0, nkv as i64, group as i64, hd as i64]);
    let stacked_shape = g.ints(&[0, 0, -1, hd as i64]);
    let unstacked_shape = g.ints(&[0, 0, group as i64, -1, hd as i64]);
    let merged_shape = g.ints(&[0, 0, qd as i64]);
    let scale = g.scalar(c.attn_scale);
    let q_perm = half_split_rows(nh, hd);
    let k_perm = half_split_rows(nkv, hd);
    for l in 0..c.n_layer {
        g.scope = format!("/model/layers.{l}");
        let t = |s: &str| format!("blk.{l}.{s}.weight");
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        let attn_norm = g.weight(
            &p("input_layernorm"),
            &[d],
            vector(gguf, &t("attn_norm"), d)?,
        );
        let wq = g.weight(
            &p("self_attn.q_proj"),
            &[d, qd],
            transposed(&matrix(gguf, &t("attn_q"), qd, d)?, qd, d, Some(&q_perm)),
        );
        let wk = g.weight(
            &p("self_attn.k_proj"),
            &[d, kvd],
            transposed(&matrix(gguf, &t("attn_k"), kvd, d)?, kvd, d, Some(&k_perm)),
        );
        let wv = g.weight(
            &p("self_attn.v_proj"),
            &[d, kvd],
            transposed(&matrix(gguf, &t("attn_v"), kvd, d)?, kvd, d, None),
        );
        let wo = g.weight(
            &p("self_attn.o_proj"),
            &[qd, d],
            transposed(&matrix(gguf, &t("attn_output"), d, qd)?, d, qd, None),
        );
        let ffn_norm = g.weight(
            &p("post_attention_layernorm"),
            &[d],
            vector(gguf, &t("ffn_norm"), d)?,
        );
        let wg = g.weight(
            &p("mlp.gate_proj"),
            &[d, ffn],
            transposed(&matrix(gguf, &t("ffn_gate"), ffn, d)?, ffn, d, None),
        );
        let wu = g.weight(
            &p("mlp.up_proj"),
            &[d, ffn],
            transposed(&matrix(gguf, &t("ffn_up"), ffn, d)?, ffn, d, None),
        );
        let wd = g.weight(
            &p("mlp.down_proj"),
            &[ffn, d],
            transposed(&matrix(gguf, &t("ffn_down"), d, ffn)?, d, ffn, None),
        );

        // Attention.
        let h = g.rmsnorm(&x, &attn_norm, &eps);
        let q = g.node("MatMul", &[&h, &wq], vec![]);
        let k = g.node("MatMul", &[&h, &wk], vec![]);
        let v = g.node("MatMul", &[&h, &wv], vec![]);
        let q = g.node("Reshape", &[&q, &q_shape], vec![]);
        let k = g.node("Reshape", &[&k, &kv_shape], vec![]);
        let v = g.node("Reshape", &[&v, &kv_shape], vec![]);
        let q = g.rope(&q, &cos4, &sin4, hd);
        let k = g.rope(&k, &cos4, &sin4, hd);
        let perm = attr_ints("perm", &[0, 2, 1, 3]);
        let k = g.node("Transpose", &[&k], vec![perm.clone()]);
        let v = g.node("Transpose", &[&v], vec![perm]);
        let past_k = format!("past_key_values.{l}.key");
        let past_v = format!("past_key_values.{l}.value");
        let present_k = format!("present.{l}.key");
        let present_v = format!("present.{l}.value");
        g.node_to(
            "Concat",
            &[&past_k, &k],
            &present_k,
            vec![attr_int("axis", 2)],
        );
        g.node_to(
            "Concat",
            &[&past_v, &v],
            &present_v,
            vec![attr_int("axis", 2)],
        );
        // The queries of each KV head stacked, [B, KVH, G * S, hd], against its keys and
        // values [B, KVH, T, hd]: 4-D products (candle's CPU MatMul takes at most two
        // batch dimensions), no copy of the cache per query head.
        let qg = g.node("Reshape", &[&q, &group_shape], vec![]);
        let qg = g.node(
            "Transpose",
            &[&qg],
            vec![attr_ints("perm", &[0, 2, 3, 1, 4])],
        );
        let qg = g.node("Reshape", &[&qg, &stacked_shape], vec![]);
        // Scaled here, where the queries are contiguous (candle-onnx's MatMul needs a
        // contiguous left operand and its Transpose is a strided view).
        let qg = g.node("Mul", &[&qg, &scale], vec![]);
        let kt = g.node(
            "Transpose",
            &[&present_k],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        let scores = g.node("MatMul", &[&qg, &kt], vec![]);
        let scores = g.node("Add", &[&scores, &bias], vec![]);
        let probs = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let o = g.node("MatMul", &[&probs, &present_v], vec![]);
        let o = g.node("Reshape", &[&o, &unstacked_shape], vec![]);
        let o = g.node(
            "Transpose",
            &[&o],
            vec![attr_ints("perm", &[0, 3, 1, 2, 4])],
        );
        let o = g.node("Reshape", &[&o, &merged_shape], vec![]);
        let o = g.node("MatMul", &[&o, &wo], vec![]);
        x = g.node("Add", &[&x, &o], vec![]);

        // SwiGLU feed-forward.
        let h = g.rmsnorm(&x, &ffn_norm, &eps);
        let gate = g.node("MatMul", &[&h, &wg], vec![]);
        let up = g.node("MatMul", &[&h, &wu], vec![]);
        let sig = g.node("Sigmoid", &[&gate], vec![]);
        let act = g.node("Mul", &[&gate, &sig], vec![]);
        let act = g.node("Mul", &[&act, &up], vec![]);
        let down = g.node("MatMul", &[&act, &wd], vec![]);
        x = g.node("Add", &[&x, &down], vec![]);
        tracing::debug!(layer = l, "layer exported");
    }

    g.scope = "/model".into();
    let norm = g.weight(
        "model.norm.weight",
        &[d],
        vector(gguf, "output_norm.weight", d)?,
    );
    let h = g.rmsnorm(&x, &norm, &eps);
    let head = if tied {
        g.node("Transpose", &[&embed], vec![attr_ints("perm", &[1, 0])])
    } else {
        g.weight(
            "lm_head.weight",
            &[d, vocab],
            transposed(&matrix(gguf, "output.weight", vocab, d)?, vocab, d, None),
        )
    };
    g.node_to("MatMul", &[&h, &head], "logits", vec![]);

    let parameters = g
        .inits
        .iter()
        .filter(|t| t.data_type == dt::FLOAT)
        .map(|t| t.raw_data.len() / 4)
        .sum();
    let mut graph = build::graph("edgeai_llama", g.nodes, g.inits, inputs, outputs);
    graph.initializer.shrink_to_fit();
    let mut model = build::model(graph, OPSET);
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.doc_string = format!(
        "{} exported by edgeai from {}",
        gguf.get_str("general.name").unwrap_or("llama"),
        gguf.origin()
    );
    Ok(OnnxExport {
        model,
        config: c,
        max_positions,
        parameters,
        tied_embeddings: tied,
    })
}

/// Exports a llama-architecture GGUF to `out_dir` (created if missing): `model.onnx`,
/// `tokenizer.json`, `tokenizer_config.json` and `config.json` (see the
/// [module docs](self)).
///
/// Errors: another architecture ([`Error::Unsupported`]: `export-onnx supports
/// llama-architecture GGUFs; <arch> is not supported yet`), a malformed GGUF, weights beyond
/// one protobuf's 2 GB, a file that cannot be written.
pub fn export_onnx(gguf: &GgufFile, out_dir: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let export = build_onnx(gguf, opts)?;
    let io = |path: &Path, e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        files.push((path, bytes.len() as u64));
        Ok(())
    };
    {
        let bytes = export.model.to_bytes();
        write("model.onnx", &bytes)?;
    }
    let c = &export.config;

    let token = |key: &str| -> Option<String> {
        let id = gguf.get(key)?.as_u64()? as usize;
        gguf.string_array("tokenizer.ggml.tokens")
            .ok()?
            .get(id)
            .map(|s| s.to_string())
    };
    let bos = token("tokenizer.ggml.bos_token_id");
    let eos = token("tokenizer.ggml.eos_token_id");
    let id = |key: &str| gguf.get(key).and_then(|v| v.as_u64());
    let add_bos = gguf
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);

    let mut tokenizer_json = false;
    match Tokenizer::from_gguf(gguf) {
        Ok(t) => match t.inner() {
            Some(inner) => {
                let json = inner
                    .to_string(false)
                    .map_err(|e| Error::Tokenizer(format!("cannot serialize: {e}")))?;
                write("tokenizer.json", json.as_bytes())?;
                tokenizer_json = true;
            }
            None => tracing::warn!(
                "the GGUF's SentencePiece tokenizer has no tokenizer.json form; not written"
            ),
        },
        Err(e) => tracing::warn!("no tokenizer.json written: {e}"),
    }
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": gguf.get_str("tokenizer.chat_template"),
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": add_bos,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": export.max_positions,
    });
    write(
        "tokenizer_config.json",
        pretty(&tokenizer_config).as_bytes(),
    )?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": c.dim,
        "intermediate_size": c.ffn_dim,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab,
        "max_position_embeddings": export.max_positions,
        "rms_norm_eps": shortest(c.rms_eps),
        "rope_theta": shortest(c.rope_theta),
        "tie_word_embeddings": export.tied_embeddings,
        "bos_token_id": id("tokenizer.ggml.bos_token_id"),
        "eos_token_id": id("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
        "use_cache": true,
    });
    write("config.json", pretty(&config).as_bytes())?;
    tracing::info!(
        out = %out_dir.display(),
        onnx_bytes = files[0].1,
        parameters = export.parameters,
        "ONNX export written"
    );
    Ok(ExportReport {
        files,
        layers: c.n_layer,
        opset: OPSET,
        max_positions: export.max_positions,
        parameters: export.parameters,
        tied_embeddings: export.tied_embeddings,
        tokenizer_json,
    })
}

/// `v` as the f64 its shortest decimal form names (`1e-5`, not `9.999999747378752e-6`).
fn shortest(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// The rows of a `[heads * hd]` projection in Hugging Face's half-split order: row
/// `h * hd + s * hd/2 + i` comes from the GGUF's row `h * hd + 2i + s` (llama.cpp's converter
/// interleaved the halves for ggml's adjacent-pair RoPE).
fn half_split_rows(heads: usize, hd: usize) -> Vec<usize> {
    let half = hd / 2;
    (0..heads * hd)
        .map(|r| {
            let (h, j) = (r / hd, r % hd);
            h * hd + 2 * (j % half) + j / half
        })
        .collect()
}

/// `cos` and signed `sin` tables, `[n][hd]`: angle `p * theta^(-2i/hd)` at columns `i` and
/// `i + hd/2` (as the native decoder computes it, in f64); the sine negated in the first half
/// so that rotate-half is `x * cos + swap_halves(x) * sin`.
fn rope_tables(n: usize, hd: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = hd / 2;
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    for p in 0..n {
        let angles: Vec<f64> = (0..half)
            .map(|i| p as f64 * (theta as f64).powf(-2.0 * i as f64 / hd as f64))
            .collect();
        for s in [-1.0f32, 1.0] {
            for a in &angles {
                cos.push(a.cos() as f32);
                sin.push(s * a.sin() as f32);
            }
        }
    }
    (cos, sin)
}

/// A GGUF matrix, dequantized to f32, `[rows][cols]`.
fn matrix(g: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
    let t = g
        .tensor(name)
        .ok_or_else(|| Error::Unsupported(format!("tensor `{name}` missing")))?;
    if t.matrix_shape() != (rows, cols) || t.dims.len() > 2 {
        return Err(Error::Unsupported(format!(
            "tensor `{name}` has dims {:?}, expected [{cols}, {rows}]",
            t.dims
        )));
    }
    Ok(QMatrix::new(t.ty, rows, cols, g.tensor_data(t))?.dequantize())
}

/// A GGUF vector, dequantized to f32.
fn vector(g: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    matrix(g, name, 1, n)
}

/// `w` (`[rows][cols]`) transposed to `[cols][rows]`, its rows taken in the order `rows_from`
/// (`None`: as they are): the `[in, out]` operand of `MatMul`.
fn transposed(w: &[f32], rows: usize, cols: usize, rows_from: Option<&[usize]>) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let src = rows_from.map_or(r, |p| p[r]);
        let row = &w[src * cols..(src + 1) * cols];
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// Nodes and initializers being collected, with fresh names under `scope`.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Small int64 / f32 constants already added, by value.
    consts: HashMap<String, String>,
    scope: String,
    count: usize,
}

impl Graph {
    /// Adds node `op` and returns the name of its (one) output.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = format!("{}/{op}_{}_output_0", self.scope, self.count + 1);
        self.node_to(op, inputs, &out, attrs);
        out
    }

    /// Adds node `op` writing `out`.
    fn node_to(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) {
        self.count += 1;
        let mut n = build::node(op, inputs, &[out]);
        n.name = format!("{}/{op}_{}", self.scope, self.count);
        n.attribute = attrs;
        self.nodes.push(n);
    }

    fn add_init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.inits.push(t);
        name
    }

    /// An f32 initializer.
    fn weight(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_init(build::tensor_raw(name, &dims, dt::FLOAT, raw))
    }

    /// A 1-D int64 constant (shared by value).
    fn ints(&mut self, v: &[i64]) -> String {
        let key = format!("i64{v:?}");
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let name = format!("const_i64_{}", self.consts.len());
        self.consts.insert(key, name.clone());
        self.add_init(build::tensor_i64(&name, &[v.len() as i64], v))
    }

    /// A 0-d f32 constant (shared by value).
    fn scalar(&mut self, v: f32) -> String {
        let key = format!("f32{}", v.to_bits());
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let name = format!("const_f32_{}", self.consts.len());
        self.consts.insert(key, name.clone());
        self.add_init(build::tensor_f32(&name, &[], &[v]))
    }

    /// `x / sqrt(mean(x^2, last axis) + eps) * w`.
    fn rmsnorm(&mut self, x: &str, w: &str, eps: &str) -> String {
        let sq = self.node("Mul", &[x, x], vec![]);
        let ms = self.node(
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
        );
        let var = self.node("Add", &[&ms, eps], vec![]);
        let rms = self.node("Sqrt", &[&var], vec![]);
        let n = self.node("Div", &[x, &rms], vec![]);
        self.node("Mul", &[&n, w], vec![])
    }

    /// Rotate-half RoPE of `x` `[B, S, heads, hd]`: `x * cos + swap_halves(x) * sin`, with
    /// the sign of the rotation folded into the `sin` table.
    fn rope(&mut self, x: &str, cos: &str, sin: &str, hd: usize) -> String {
        let half = (hd / 2) as i64;
        let (zero, mid, end, axis) = (
            self.ints(&[0]),
            self.ints(&[half]),
            self.ints(&[hd as i64]),
            self.ints(&[3]),
        );
        let lo = self.node("Slice", &[x, &zero, &mid, &axis], vec![]);
        let hi = self.node("Slice", &[x, &mid, &end, &axis], vec![]);
        let swapped = self.node("Concat", &[&hi, &lo], vec![attr_int("axis", 3)]);
        let a = self.node("Mul", &[x, cos], vec![]);
        let b = self.node("Mul", &[&swapped, sin], vec![]);
        self.node("Add", &[&a, &b], vec![])
    }
}

#[cfg(test)]
mod tests;
