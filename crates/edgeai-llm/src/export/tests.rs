use super::*;
use crate::gguf::{writer::GgufWriter, Value};
use edgeai_core::quant::GgmlType;
use edgeai_onnx::proto::ValueInfoProto;

const DIM: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 8;
const FFN: usize = 48;
const LAYERS: usize = 2;
const CTX: usize = 64;

/// A byte-level BPE vocabulary: `a`, `b`, `c`, space (`Ġ`), `ab`, `Ġa` and two specials.
const TOKENS: &[&str] = &["a", "b", "c", "Ġ", "ab", "Ġa", "<|im_start|>", "<|im_end|>"];

/// A tiny llama GGUF (F32 weights, GQA 4 / 2 heads, a BPE tokenizer and a chat template);
/// `tied` leaves out `output.weight`.
fn tiny_llama(arch: &str, tied: bool) -> GgufFile {
    let mut rng = Rng(0x2545_f491_4f6c_dd1du64);
    let u = |v: usize| Value::U32(v as u32);
    let s = |v: &str| Value::String(v.into());
    let vocab = TOKENS.len();
    let mut g = GgufWriter::new()
        .kv("general.architecture", s(arch))
        .kv("general.name", s("tiny"))
        .kv(&format!("{arch}.block_count"), u(LAYERS))
        .kv(&format!("{arch}.context_length"), u(CTX))
        .kv(&format!("{arch}.embedding_length"), u(DIM))
        .kv(&format!("{arch}.feed_forward_length"), u(FFN))
        .kv(&format!("{arch}.attention.head_count"), u(HEADS))
        .kv(&format!("{arch}.attention.head_count_kv"), u(KV_HEADS))
        .kv(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        )
        .kv(&format!("{arch}.rope.freq_base"), Value::F32(10_000.0))
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.pre", s("smollm"))
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(TOKENS.iter().map(|t| s(t)).collect()),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(
                (0..vocab)
                    .map(|i| Value::I32(if i >= 6 { 3 } else { 1 }))
                    .collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.merges",
            Value::Array(vec![s("a b"), s("Ġ a")]),
        )
        .kv("tokenizer.ggml.bos_token_id", u(6))
        .kv("tokenizer.ggml.eos_token_id", u(7))
        .kv(
            "tokenizer.chat_template",
            s("{% for m in messages %}{{m}}{% endfor %}"),
        );
    let (q, kv) = (HEADS * HD, KV_HEADS * HD);
    let mat = |g: GgufWriter, rng: &mut Rng, name: &str, rows: usize, cols: usize| {
        let data = rng.bytes(rows * cols, 0.5, 0.0);
        g.tensor(name, &[cols as u64, rows as u64], GgmlType::F32, data)
    };
    g = mat(g, &mut rng, "token_embd.weight", vocab, DIM);
    for l in 0..LAYERS {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        for (name, rows, cols) in [
            ("attn_q", q, DIM),
            ("attn_k", kv, DIM),
            ("attn_v", kv, DIM),
            ("attn_output", DIM, q),
            ("ffn_gate", FFN, DIM),
            ("ffn_up", FFN, DIM),
            ("ffn_down", DIM, FFN),
        ] {
            g = mat(g, &mut rng, &n(name), rows, cols);
        }
        for name in ["attn_norm", "ffn_norm"] {
            let data = rng.bytes(DIM, 0.5, 1.0);
            g = g.tensor(&n(name), &[DIM as u64], GgmlType::F32, data);
        }
    }
    let norm = rng.bytes(DIM, 0.5, 1.0);
    g = g.tensor("output_norm.weight", &[DIM as u64], GgmlType::F32, norm);
    if !tied {
        g = mat(g, &mut rng, "output.weight", vocab, DIM);
    }
    GgufFile::from_bytes(g.build()).unwrap()
}

fn dims(v: &ValueInfoProto) -> Vec<String> {
    let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match (&d.dim_param, d.dim_value) {
            (Some(p), _) => p.clone(),
            (None, Some(n)) => n.to_string(),
            _ => "?".into(),
        })
        .collect()
}

fn elem(v: &ValueInfoProto) -> i32 {
    v.r#type
        .as_ref()
        .unwrap()
        .tensor_type
        .as_ref()
        .unwrap()
        .elem_type
}

#[test]
fn export_has_the_optimum_interface_and_only_the_intended_ops() {
    let dir = std::env::temp_dir().join(format!("edgeai-export-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gguf = tiny_llama("llama", true);
    let report = export_onnx(&gguf, &dir, &ExportOptions::default()).unwrap();
    assert_eq!((report.layers, report.opset), (LAYERS, OPSET));
    assert_eq!(report.max_positions, CTX);
    assert!(report.tied_embeddings && report.tokenizer_json);
    let names: Vec<_> = report
        .files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "model.onnx",
            "tokenizer.json",
            "tokenizer_config.json",
            "config.json"
        ]
    );

    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    assert_eq!(bytes.len() as u64, report.files[0].1);
    let model = edgeai_onnx::decode(&bytes, "model.onnx").unwrap();
    assert_eq!(model.default_opset(), OPSET);
    let graph = model.main_graph().unwrap();

    let (kv, hd) = (KV_HEADS.to_string(), HD.to_string());
    let mut want_in = vec![
        (
            "input_ids".to_string(),
            dt::INT64,
            vec!["batch_size", "sequence_length"],
        ),
        (
            "attention_mask".into(),
            dt::INT64,
            vec!["batch_size", "total_sequence_length"],
        ),
        (
            "position_ids".into(),
            dt::INT64,
            vec!["batch_size", "sequence_length"],
        ),
    ];
    let vocab = TOKENS.len().to_string();
    let mut want_out = vec![(
        "logits".to_string(),
        dt::FLOAT,
        vec!["batch_size", "sequence_length", vocab.as_str()],
    )];
    for i in 0..LAYERS {
        for kind in ["key", "value"] {
            want_in.push((
                format!("past_key_values.{i}.{kind}"),
                dt::FLOAT,
                vec!["batch_size", &kv, "past_sequence_length", &hd],
            ));
            want_out.push((
                format!("present.{i}.{kind}"),
                dt::FLOAT,
                vec!["batch_size", &kv, "total_sequence_length", &hd],
            ));
        }
    }
    let got = |vs: &[ValueInfoProto]| -> Vec<(String, i32, Vec<String>)> {
        vs.iter()
            .map(|v| (v.name.clone(), elem(v), dims(v)))
            .collect()
    };
    let want = |w: Vec<(String, i32, Vec<&str>)>| -> Vec<(String, i32, Vec<String>)> {
        w.into_iter()
            .map(|(n, t, d)| (n, t, d.into_iter().map(String::from).collect()))
            .collect()
    };
    assert_eq!(got(&graph.input), want(want_in));
    assert_eq!(got(&graph.output), want(want_out));

    // Only the intended operators, all in the default domain; every node input is defined.
    let mut ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops, OPS);
    assert!(graph.node.iter().all(|n| n.domain.is_empty()));
    let mut defined: std::collections::HashSet<&str> =
        graph.input.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    for n in &graph.node {
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{}: input {i} undefined",
                n.name
            );
        }
        for o in &n.output {
            assert!(defined.insert(o), "{o} defined twice");
        }
    }
    let mut node_names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    node_names.sort();
    assert!(
        node_names.windows(2).all(|w| w[0] != w[1]),
        "node names repeat"
    );
    for o in &graph.output {
        assert!(
            defined.contains(o.name.as_str()),
            "output {} undefined",
            o.name
        );
    }
    // Tied: one copy of the embedding, used by the Gather and (transposed) by the logits.
    let embed = graph
        .initializer
        .iter()
        .filter(|t| t.dims == [TOKENS.len() as i64, DIM as i64])
        .count();
    assert_eq!(embed, 1);

    // The side files.
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let cfg = json("config.json");
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["num_hidden_layers"], LAYERS);
    assert_eq!(cfg["num_attention_heads"], HEADS);
    assert_eq!(cfg["num_key_value_heads"], KV_HEADS);
    assert_eq!(cfg["head_dim"], HD);
    assert_eq!(cfg["hidden_size"], DIM);
    assert_eq!(cfg["vocab_size"], TOKENS.len());
    assert_eq!(cfg["max_position_embeddings"], CTX);
    assert_eq!(cfg["rope_theta"], 10_000.0);
    assert_eq!(cfg["rms_norm_eps"], 1e-5);
    let tc = json("tokenizer_config.json");
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["model_max_length"], CTX);
    assert_eq!(
        tc["chat_template"],
        "{% for m in messages %}{{m}}{% endfor %}"
    );

    // The saved tokenizer encodes as the GGUF's does.
    let from_gguf = Tokenizer::from_gguf(&gguf).unwrap();
    let from_json = Tokenizer::from_json_file(dir.join("tokenizer.json")).unwrap();
    for text in ["ab a", "<|im_start|>abc<|im_end|>", "c a b"] {
        let ids = from_gguf.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(from_json.encode(text).unwrap(), ids, "{text:?}");
    }
    // tokenizer_config.json's BOS settings, which tokenizer.json does not carry.
    let bos = from_json.bos_id().unwrap();
    let reload = || Tokenizer::from_json_file(dir.join("tokenizer.json")).unwrap();
    let with = reload().with_bos(tc["bos_token"].as_str(), true).unwrap();
    assert_eq!(with.bos_id(), Some(bos));
    let plain = from_json.encode("ab a").unwrap();
    let mut want = vec![bos];
    want.extend(&plain);
    assert_eq!(with.encode("ab a").unwrap(), want);
    let e = reload().with_bos(Some("<nope>"), true).unwrap_err();
    assert!(e.to_string().contains("<nope>"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untied_output_gets_its_own_matrix() {
    let e = build_onnx(
        &tiny_llama("llama", false),
        &ExportOptions::default().with_max_positions(16),
    )
    .unwrap();
    assert!(!e.tied_embeddings);
    assert_eq!(e.max_positions, 16);
    let g = e.model.main_graph().unwrap();
    let head = g
        .initializer
        .iter()
        .find(|t| t.name == "lm_head.weight")
        .unwrap();
    assert_eq!(head.dims, [DIM as i64, TOKENS.len() as i64]);
    let cos = g
        .initializer
        .iter()
        .find(|t| t.name == "model.rotary_emb.cos")
        .unwrap();
    assert_eq!(cos.dims, [16, HD as i64]);
    assert!(!g
        .node
        .iter()
        .any(|n| n.op_type == "Transpose" && n.input[0] == "model.embed_tokens.weight"));
}

#[test]
fn other_architectures_are_a_clear_error() {
    let e = build_onnx(&tiny_llama("gemma3", true), &ExportOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported model: export-onnx supports llama-architecture GGUFs; gemma3 is not \
         supported yet"
    );
    let e = build_onnx(
        &tiny_llama("llama", true),
        &ExportOptions::default().with_max_positions(0),
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_positions 0"), "{e}");
}

#[test]
fn half_split_rows_undo_the_converters_interleaving() {
    // One head of 8: GGUF rows (0,1) are HF rows (0,4), (2,3) are (1,5), ...
    assert_eq!(half_split_rows(1, 8), [0, 2, 4, 6, 1, 3, 5, 7]);
    assert_eq!(half_split_rows(2, 4)[4..], [4, 6, 5, 7]);
    // Rotate-half on the reordered rows equals the adjacent-pair rotation on the GGUF's.
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.0).collect();
    let (cos, sin) = rope_tables(6, 8, 10_000.0);
    let p = 5;
    let (c, s) = (&cos[p * 8..(p + 1) * 8], &sin[p * 8..(p + 1) * 8]);
    let mut native = x.clone();
    let half_cos: Vec<f32> = c[..4].to_vec();
    let half_sin: Vec<f32> = s[4..].to_vec();
    crate::decoder::rope_normal(&mut native, 8, &half_cos, &half_sin);
    let perm = half_split_rows(1, 8);
    let hf: Vec<f32> = perm.iter().map(|&r| x[r]).collect();
    let rotated: Vec<f32> = (0..8)
        .map(|j| hf[j] * c[j] + hf[(j + 4) % 8] * s[j])
        .collect();
    let native_hf: Vec<f32> = perm.iter().map(|&r| native[r]).collect();
    for (a, b) in rotated.iter().zip(&native_hf) {
        assert!((a - b).abs() < 1e-6, "{rotated:?} vs {native_hf:?}");
    }
}

/// xorshift64: the same weights on every run.
struct Rng(u64);

impl Rng {
    /// `n` f32 values in `offset ± scale / 2`, as little-endian bytes.
    fn bytes(&mut self, n: usize, scale: f32, offset: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                let v = offset + ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
                v.to_le_bytes()
            })
            .collect()
    }
}
