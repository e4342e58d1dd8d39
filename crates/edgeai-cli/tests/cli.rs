//! Runs the `edgeai` binary on the fetched models and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeai::core::{npy, LoadOptions, Tensor};
use edgeai_testutil::model_path;

fn edgeai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeai"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the edgeai binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure: the exit code, a one-line `edgeai: error:` message containing every
/// `needle`, and no panic.
fn assert_fails(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    if code == 1 {
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one line, got: {err}");
        assert!(lines[0].starts_with("edgeai: error: "), "{err}");
    }
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn fetched(rel: &str) -> Option<PathBuf> {
    let p = model_path(rel);
    if p.is_none() {
        eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
    }
    p
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgeai-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn usage_errors_exit_2() {
    assert_fails(&edgeai(&[]), 2, &["Usage"]);
    assert_fails(&edgeai(&["frobnicate"]), 2, &["frobnicate"]);
    assert_fails(
        &edgeai(&["run", "m.onnx", "--input", "novalue"]),
        2,
        &["novalue"],
    );
    assert_fails(
        &edgeai(&["bench", "m.onnx", "--backend", "nosuch"]),
        2,
        &["unknown backend `nosuch`", "tract"],
    );
    assert_fails(&edgeai(&["bench", "m.onnx", "--runs", "x"]), 2, &["--runs"]);
    assert_fails(&edgeai(&["face", "enroll", "alice"]), 2, &["PHOTOS"]);
    let o = edgeai(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for cmd in ["inspect", "run", "bench", "chat", "face"] {
        assert!(stdout(&o).contains(cmd), "{cmd} missing from --help");
    }
}

/// `EDGEAI_KERNEL` naming no path, or a path this CPU lacks, is a usage error that names it and
/// lists what the CPU has (never an illegal instruction later); a path it has is accepted.
#[test]
fn forcing_a_missing_kernel_path_is_a_usage_error() {
    let run = |v: &str| {
        Command::new(env!("CARGO_BIN_EXE_edgeai"))
            .args(["run", "nope.onnx"])
            .env("EDGEAI_KERNEL", v)
            .env_remove("RUST_LOG")
            .output()
            .expect("the edgeai binary runs")
    };
    let o = run("no-such-path");
    assert_fails(
        &o,
        2,
        &[
            "EDGEAI_KERNEL=no-such-path",
            "unknown kernel path",
            "scalar",
        ],
    );
    let foreign = if cfg!(target_arch = "x86_64") {
        "dotprod"
    } else {
        "avx2"
    };
    let o = run(foreign);
    let var = format!("EDGEAI_KERNEL={foreign}");
    assert_fails(
        &o,
        2,
        &[&var, "not available on this CPU", "available: scalar"],
    );
    // The scalar path always exists: the command goes on and fails on the missing file.
    assert_fails(&run("scalar"), 1, &["nope.onnx"]);
}

#[test]
fn missing_and_malformed_files_exit_1_naming_the_file() {
    let d = temp_dir("missing");
    let missing = d.join("nope.onnx");
    assert_fails(&edgeai(&["inspect", s(&missing)]), 1, &["nope.onnx"]);
    assert_fails(&edgeai(&["run", s(&missing)]), 1, &["nope.onnx"]);
    assert_fails(&edgeai(&["bench", s(&missing)]), 1, &["nope.onnx"]);
    let gguf = d.join("nope.gguf");
    assert_fails(
        &edgeai(&["chat", s(&gguf), "--prompt", "hi"]),
        1,
        &["nope.gguf"],
    );
    let junk = d.join("junk.onnx");
    std::fs::write(&junk, b"\x0a\xff\xff\xff\x0fjunk").unwrap();
    assert_fails(
        &edgeai(&["inspect", s(&junk)]),
        1,
        &["junk.onnx", "not a valid ONNX protobuf"],
    );
    let junk = d.join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\0\0\0\xff").unwrap();
    assert_fails(&edgeai(&["inspect", s(&junk)]), 1, &["junk.gguf"]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Runs the model through the binary with an input written to .npy and compares every
/// output file with what the library computes on the same input.
/// `edgeai run` on `rel` with the first compiled-in backend that loads it; the outputs must
/// equal the library's on the same inputs. `shape` fixes the input shape (else symbolic dims
/// are 1).
fn run_matches_library(rel: &str, tag: &str, shape: Option<&[usize]>) {
    let Some(model) = fetched(rel) else { return };
    let d = temp_dir(tag);
    // tract (the default) cannot type the PP-OCR classifier as shipped ([-1, 3, ?, ?] and a
    // symbolic Shape->Reshape chain); candle, burn and ort can, when compiled in.
    let mut loaded = None;
    for name in edgeai::available_backends() {
        let backend = edgeai::backend(name).unwrap();
        match backend.load(model.as_path().into(), &LoadOptions::new().with_threads(1)) {
            Ok(m) => {
                loaded = Some((name, m));
                break;
            }
            Err(e) => eprintln!("{name} cannot load {rel}: {e}"),
        }
    }
    let Some((backend_name, m)) = loaded else {
        eprintln!(
            "skipping: no compiled-in backend ({}) loads {rel}",
            edgeai::available_backends().join(", ")
        );
        return;
    };
    let inputs = match shape {
        Some(shape) => vec![Tensor::from_vec(
            shape.to_vec(),
            (0..shape.iter().product::<usize>())
                .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
                .collect(),
        )
        .unwrap()],
        None => edgeai::bench::random_inputs(m.inputs(), 7, 1).unwrap(),
    };
    let mut args = vec![
        "run".to_string(),
        model.display().to_string(),
        "--backend".into(),
        backend_name.into(),
        "--threads".into(),
        "1".into(),
        "--output-dir".into(),
        d.join("out").display().to_string(),
    ];
    for (spec, t) in m.inputs().iter().zip(&inputs) {
        let p = d.join(format!("{tag}_in.npy"));
        npy::write(&p, t).unwrap();
        args.push("--input".into());
        args.push(format!("{}={}", spec.name, p.display()));
    }
    let expected = m.run(inputs).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = edgeai(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for (spec, want) in m.outputs().iter().zip(&expected) {
        // The CLI writes `<name>.npy` with characters other than letters, digits, `.`, `_`
        // and `-` replaced by `_` (PP-OCR's output is `save_infer_model/scale_0.tmp_1`).
        let safe: String = spec
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = d.join("out").join(format!("{safe}.npy"));
        let got = npy::read(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.shape(), want.shape());
        let worst = edgeai_testutil::max_abs_diff(&got, want);
        assert!(worst <= 1e-5, "{}: max abs difference {worst}", spec.name);
        assert!(
            stdout(&o).contains(&format!("output {}: f32 {:?}", spec.name, want.shape())),
            "{}",
            stdout(&o)
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn run_on_sface_writes_the_library_outputs() {
    run_matches_library("face/sface.onnx", "sface", None);
}

#[test]
fn run_on_the_classifier_writes_the_library_outputs() {
    run_matches_library(
        "cls/ppocr_mobilenetv3_cls.onnx",
        "cls",
        Some(&[1, 3, 48, 192]),
    );
}

#[test]
fn run_rejects_bad_inputs_with_clear_messages() {
    let Some(model) = fetched("face/sface.onnx") else {
        return;
    };
    let model = s(&model).to_string();
    let name = {
        let b = edgeai::backend("tract").unwrap();
        let m = b.load(model.as_str().into(), &LoadOptions::new()).unwrap();
        m.inputs()[0].name.clone()
    };
    let d = temp_dir("badin");
    let wrong_dtype = d.join("ints.npy");
    npy::write(
        &wrong_dtype,
        &Tensor::zeros(edgeai::core::DType::I64, vec![1, 3, 112, 112]).unwrap(),
    )
    .unwrap();
    let o = edgeai(&[
        "run",
        &model,
        "--input",
        &format!("{name}={}", s(&wrong_dtype)),
    ]);
    assert_fails(
        &o,
        1,
        &[
            "ints.npy",
            &format!("input `{name}`"),
            "expected dtype f32, got i64",
        ],
    );

    let wrong_shape = d.join("small.npy");
    npy::write(
        &wrong_shape,
        &Tensor::zeros(edgeai::core::DType::F32, vec![1, 3, 4, 4]).unwrap(),
    )
    .unwrap();
    let o = edgeai(&[
        "run",
        &model,
        "--input",
        &format!("{name}={}", s(&wrong_shape)),
    ]);
    assert_fails(&o, 1, &["small.npy", "expected shape", "[1, 3, 4, 4]"]);

    let garbage = d.join("garbage.npy");
    std::fs::write(&garbage, b"not numpy at all").unwrap();
    let o = edgeai(&["run", &model, "--input", &format!("{name}={}", s(&garbage))]);
    assert_fails(&o, 1, &["garbage.npy", "bad magic"]);

    let o = edgeai(&[
        "run",
        &model,
        "--input",
        &format!("{name}={}", s(&d.join("absent.npy"))),
    ]);
    assert_fails(&o, 1, &["absent.npy"]);

    let o = edgeai(&["run", &model, "--input", "nosuchinput=random"]);
    assert_fails(&o, 2, &["no input named `nosuchinput`", &name]);

    let o = edgeai(&["run", &model]);
    assert_fails(&o, 2, &[&format!("no --input for `{name}`")]);

    let o = edgeai(&["run", &model, "--input", &format!("{name}=random")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("f32 [1, 3, 112, 112]"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn inspect_gguf_shows_architecture_and_vocab() {
    let Some(model) = fetched("llm/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let o = edgeai(&["inspect", s(&model)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("architecture:    llama"), "{out}");
    assert!(out.contains("vocab size:      49152"), "{out}");
    assert!(out.contains("context length:  8192"), "{out}");
    assert!(out.contains("Q4_1"), "{out}");
    assert!(
        out.contains("chat template:") && out.contains("im_start"),
        "{out}"
    );
}

#[test]
fn export_onnx_writes_the_model_and_refuses_other_architectures() {
    let Some(model) = fetched("llm/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let d = temp_dir("export-onnx");
    let out_dir = d.join("smollm2");
    let o = edgeai(&[
        "export-onnx",
        s(&model),
        s(&out_dir),
        "--max-positions",
        "64",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("30 layers, opset 17") && out.contains("64 positions"),
        "{out}"
    );
    for f in [
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
    ] {
        assert!(out.contains(f), "{f} not in {out}");
        assert!(out_dir.join(f).is_file(), "{f} not written");
    }
    // The export chats through the registry's ONNX engine on tract (in every build), with the
    // template from tokenizer_config.json and the context capped by config.json.
    let o = edgeai(&[
        "chat",
        "--engine",
        "onnx:tract",
        s(&out_dir),
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--ctx",
        "256",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("engine onnx:tract (30 layers, 3 KV heads x 64, f32 cache)")
            && err.contains("context 64")
            && err.contains("ChatML"),
        "{err}"
    );
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    if let Some(gemma) = fetched("llm/gemma-3-270m-Q4_K_M.gguf") {
        let o = edgeai(&["export-onnx", s(&gemma), s(&d.join("gemma"))]);
        assert_fails(
            &o,
            1,
            &["export-onnx supports llama-architecture GGUFs; gemma3 is not supported yet"],
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn inspect_onnx_shows_io_operators_and_backends() {
    let Some(model) = fetched("face/sface.onnx") else {
        return;
    };
    let o = edgeai(&["inspect", s(&model)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "format:          ONNX",
        "opsets:",
        "inputs:",
        "outputs:",
        "Conv",
        "tract    loads",
    ] {
        assert!(out.contains(needle), "`{needle}` not in {out}");
    }
    assert!(out.contains("[1, 3, 112, 112]"), "{out}");
}

#[test]
fn bench_json_reports_every_figure() {
    let Some(model) = fetched("face/sface.onnx") else {
        return;
    };
    let o = edgeai(&[
        "bench",
        s(&model),
        "--backend",
        "all",
        "--runs",
        "3",
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), edgeai::available_backends().len());
    let r = &results[0];
    assert_eq!(r["backend"], "tract");
    assert_eq!(r["ok"], true);
    assert_eq!(r["run_ms"].as_array().unwrap().len(), 3);
    let median = r["median_ms"].as_f64().unwrap();
    assert!(median > 0.0 && median <= r["p90_ms"].as_f64().unwrap());
    assert!(r["load_ms"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        assert!(r["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    }
    assert_eq!(r["output_shapes"][0][0], 1);

    let o = edgeai(&["bench", s(&model), "--backend", "tract", "--runs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("median ms"), "{}", stdout(&o));
}

#[test]
fn chat_at_temperature_zero_is_deterministic() {
    let Some(model) = fetched("llm/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let args = [
        "chat",
        s(&model),
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--ctx",
        "256",
    ];
    let a = edgeai(&args);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    let b = edgeai(&args);
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    assert!(!stdout(&a).trim().is_empty());
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stderr(&a).contains("tok/s"), "{}", stderr(&a));
    assert!(stderr(&a).contains(", f16 KV)"), "{}", stderr(&a));
    // An f32 cache: the same kind of answer (the rounding is 1e-3 of the logits), its own
    // header.
    let mut f32_args = args.to_vec();
    f32_args.extend(["--kv-cache", "f32"]);
    let c = edgeai(&f32_args);
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    assert!(stderr(&c).contains(", f32 KV)"), "{}", stderr(&c));
    assert!(!stdout(&c).trim().is_empty());
    let mut q8_args = args.to_vec();
    q8_args.extend(["--kv-cache", "q8_0"]);
    let q = edgeai(&q8_args);
    assert_eq!(q.status.code(), Some(0), "{}", stderr(&q));
    assert!(stderr(&q).contains(", q8_0 KV)"), "{}", stderr(&q));
    assert!(!stdout(&q).trim().is_empty());
    assert_fails(
        &edgeai(&["chat", s(&model), "--engine", "nope"]),
        2,
        &["nope"],
    );
    assert_fails(
        &edgeai(&["chat", s(&model), "--kv-cache", "q4", "-p", "hi"]),
        2,
        &["--kv-cache", "q4", "f16, q8_0 or f32"],
    );
}

#[test]
fn gemma3_raw_completion_and_inspect() {
    let Some(model) = fetched("llm/gemma-3-270m-Q4_K_M.gguf") else {
        return;
    };
    let args = [
        "chat",
        s(&model),
        "--raw",
        "--prompt",
        "The Eiffel Tower is located in the city of",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--ctx",
        "128",
    ];
    let a = edgeai(&args);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert!(stdout(&a).contains("Paris"), "{}", stdout(&a));
    assert!(stderr(&a).contains("raw completion"), "{}", stderr(&a));
    assert_fails(
        &edgeai(&["chat", s(&model), "--raw", "--system", "x", "-p", "hi"]),
        2,
        &["--system"],
    );
    let i = edgeai(&["inspect", s(&model)]);
    assert_eq!(i.status.code(), Some(0), "{}", stderr(&i));
    let out = stdout(&i);
    assert!(
        out.contains("gemma3") && out.contains("Gemma turns"),
        "{out}"
    );
}

#[test]
fn face_enroll_identify_verify_list_remove() {
    let (Some(_), Some(_), Some(obama), Some(obama2), Some(obama3), Some(biden)) = (
        fetched("face/yunet.onnx"),
        fetched("face/sface.onnx"),
        fetched("photos/obama.jpg"),
        fetched("photos/obama2.jpg"),
        fetched("photos/obama3.jpg"),
        fetched("photos/biden.jpg"),
    ) else {
        return;
    };
    let d = temp_dir("face");
    let gallery = d.join("g.sqlite");
    let g = ["--gallery", s(&gallery)];
    let face = |args: &[&str]| {
        let mut v = vec!["face"];
        v.extend_from_slice(&g);
        v.extend_from_slice(args);
        edgeai(&v)
    };
    let o = face(&["enroll", "obama", s(&obama), s(&obama2)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("enrolled `obama` (2 photo(s))"),
        "{}",
        stdout(&o)
    );
    let o = face(&["enroll", "biden", s(&biden)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = face(&["list"]);
    assert!(
        stdout(&o).contains("2 identities") && stdout(&o).contains("obama (2 photo(s))"),
        "{}",
        stdout(&o)
    );

    let out_png = d.join("annotated.png");
    let o = face(&["identify", s(&obama3), "--out", s(&out_png)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(": obama 0."), "{}", stdout(&o));
    assert!(out_png.exists());

    // --json: one document, full-precision scores, best candidate first.
    let o = face(&["--json", "identify", s(&obama3), "--out", s(&out_png)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_str(stdout(&o).trim()).expect("one JSON document");
    let faces = doc["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{doc}");
    assert_eq!(faces[0]["identity"], "obama", "{doc}");
    let c = faces[0]["candidates"].as_array().unwrap();
    assert_eq!(
        (c.len(), &c[0]["name"], &c[1]["name"]),
        (2, &"obama".into(), &"biden".into())
    );
    let (best, second) = (
        c[0]["cosine"].as_f64().unwrap(),
        c[1]["cosine"].as_f64().unwrap(),
    );
    assert!(best > 0.5 && second < best, "{doc}");
    assert!(
        (doc["threshold"].as_f64().unwrap() - 0.363).abs() < 1e-6,
        "{doc}"
    );
    let o = face(&["--json", "verify", s(&obama), s(&biden)]);
    let doc: serde_json::Value =
        serde_json::from_str(stdout(&o).trim()).expect("one JSON document");
    assert_eq!(doc["same_person"], false, "{doc}");
    assert!(doc["cosine"].as_f64().unwrap() < 0.363, "{doc}");

    let o = face(&["verify", s(&obama), s(&obama3)]);
    assert!(stdout(&o).contains("same person"), "{}", stdout(&o));
    let o = face(&["verify", s(&obama), s(&biden)]);
    assert!(stdout(&o).contains("different people"), "{}", stdout(&o));

    let o = face(&["remove", "biden"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_fails(
        &face(&["remove", "biden"]),
        1,
        &["no identity named `biden`"],
    );
    assert_fails(
        &face(&["enroll", "x", s(&d.join("nophoto.jpg"))]),
        1,
        &["nophoto.jpg"],
    );
    let o = face(&["list"]);
    assert!(stdout(&o).contains("1 identities"), "{}", stdout(&o));
    std::fs::remove_dir_all(&d).unwrap();
}
