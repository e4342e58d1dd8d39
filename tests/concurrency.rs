//! Concurrency contract:
//! - one loaded graph model shared by 8 threads running at once gives outputs bit-identical
//!   to a single-threaded run, on every backend compiled in (`edgeai::available_backends()`);
//! - two LLM generation sessions over one loaded model, each with its own KV cache, run at
//!   once and each produces exactly what it produces alone;
//! - a gallery file enrolled into and searched from several threads, and from two processes,
//!   at once: every enrolment lands, and no `database is locked` reaches the caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Barrier};

use edgeai::core::{LoadOptions, Model, ModelSource, Tensor};
use edgeai::vision::{Gallery, GalleryConfig};
use edgeai_testutil::model_path;

const THREADS: usize = 8;

fn backends() -> Vec<Box<dyn edgeai::core::Backend>> {
    edgeai_testutil::backends(edgeai::available_backends(), edgeai::backend)
}

/// Deterministic pseudo-random input for `model`'s single f32 input, with symbolic
/// dimensions set to `sym`.
fn input(model: &dyn Model, seed: usize, sym: usize) -> Tensor {
    let spec = &model.inputs()[0];
    let shape: Vec<usize> = spec
        .shape
        .as_ref()
        .expect("a known rank")
        .iter()
        .map(|d| match d {
            edgeai::core::Dim::Fixed(n) => *n,
            edgeai::core::Dim::Symbolic(_) => sym,
        })
        .collect();
    let n: usize = shape.iter().product();
    let mut x = (seed as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 256) as f32
        })
        .collect();
    Tensor::from_vec(shape, v).unwrap()
}

/// Runs `model` from 8 threads at once (released together by a barrier), each thread
/// several inputs, and compares every output with the single-threaded run of that input.
fn shared_by_eight_threads(name: &str, model: Box<dyn Model>, sym: usize, rounds: usize) {
    let model: Arc<dyn Model> = Arc::from(model);
    let expected: Vec<Vec<Tensor>> = (0..THREADS * rounds)
        .map(|s| model.run(vec![input(model.as_ref(), s, sym)]).unwrap())
        .collect();
    let expected = Arc::new(expected);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (model, expected, barrier) = (
                Arc::clone(&model),
                Arc::clone(&expected),
                Arc::clone(&barrier),
            );
            let name = name.to_string();
            std::thread::spawn(move || {
                barrier.wait();
                // Thread t runs inputs t, t + 8, ... so every thread runs different data.
                for r in 0..rounds {
                    let s = r * THREADS + t;
                    let out = model.run(vec![input(model.as_ref(), s, sym)]).unwrap();
                    assert_eq!(out, expected[s], "{name}: thread {t}, input {s} differs");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a worker thread panicked");
    }
}

fn relu_model() -> Vec<u8> {
    // Y = Relu(X), X float [N, 3]: the protobuf bytes, spelled out (no committed binary).
    let vi = |name: u8| -> Vec<u8> {
        // ValueInfoProto { name, type { tensor_type { elem_type: 1, shape [N, 3] } } }
        let dims = [
            vec![0x0a, 0x03, 0x12, 0x01, b'N'], // dim { dim_param: "N" }
            vec![0x0a, 0x02, 0x08, 0x03],       // dim { dim_value: 3 }
        ]
        .concat();
        let shape = [vec![0x12, dims.len() as u8], dims].concat();
        let tt = [vec![0x08, 0x01], shape].concat();
        let tp = [vec![0x0a, tt.len() as u8], tt].concat();
        [vec![0x0a, 0x01, name, 0x12, tp.len() as u8], tp].concat()
    };
    let (x, y) = (vi(b'X'), vi(b'Y'));
    let node = [
        vec![0x0a, 0x01, b'X', 0x12, 0x01, b'Y', 0x22, 0x04],
        b"Relu".to_vec(),
    ]
    .concat();
    let graph = [
        vec![0x0a, node.len() as u8],
        node,
        vec![0x12, 0x01, b'g'],
        vec![0x5a, x.len() as u8],
        x,
        vec![0x62, y.len() as u8],
        y,
    ]
    .concat();
    [
        vec![0x08, 0x08],             // ir_version 8
        vec![0x42, 0x02, 0x10, 0x0d], // opset_import { version: 13 }
        vec![0x3a, graph.len() as u8],
        graph,
    ]
    .concat()
}

fn load(b: &dyn edgeai::core::Backend, src: ModelSource) -> Option<Box<dyn Model>> {
    match b.load(src, &LoadOptions::new()) {
        Ok(m) => Some(m),
        Err(e @ edgeai::core::Error::BackendUnavailable { .. }) => {
            eprintln!("skipping {}: {e}", b.name());
            None
        }
        Err(e) => panic!("{}: {e}", b.name()),
    }
}

#[test]
fn generated_model_shared_by_eight_threads() {
    for b in backends() {
        let Some(m) = load(b.as_ref(), ModelSource::Bytes(relu_model())) else {
            continue;
        };
        shared_by_eight_threads(&format!("{} relu", b.name()), m, 1000, 16);
    }
}

#[test]
fn face_models_shared_by_eight_threads() {
    for rel in ["face/sface.onnx", "face/yunet.onnx"] {
        let Some(path) = model_path(rel) else {
            eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
            continue;
        };
        for b in backends() {
            let Some(m) = load(b.as_ref(), path.clone().into()) else {
                continue;
            };
            // YuNet's input size is symbolic: 160x160 keeps the test quick.
            shared_by_eight_threads(&format!("{} {rel}", b.name()), m, 160, 2);
        }
    }
}

// ------------------------------------------------------------------ LLM

#[test]
fn two_llm_sessions_over_one_model_at_once() {
    use edgeai::llm::{DecoderModel, EngineOptions, GenerateOptions, Llm, SamplerConfig};
    const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
    let Some(path) = model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let model = DecoderModel::open(path).unwrap();
    let engine = EngineOptions {
        context_length: 256,
        batch: 16,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: 24,
        sampler: SamplerConfig::greedy(),
        ..GenerateOptions::default()
    };
    let prompts = [
        "The capital of France is",
        "Here is a list of prime numbers: 2, 3, 5,",
    ];
    // Alone, one after the other.
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut llm = Llm::from_model(Arc::clone(&model), &engine).unwrap();
            llm.complete(p, &opts).unwrap().tokens
        })
        .collect();
    assert_ne!(
        alone[0], alone[1],
        "the two prompts should continue differently"
    );
    // Together: two sessions (own KV caches) over the same weights, started at once, each
    // completing twice so that the second prompt of one overlaps the decode of the other.
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (model, engine, opts, barrier) = (
                Arc::clone(&model),
                engine.clone(),
                opts.clone(),
                Arc::clone(&barrier),
            );
            let p = p.to_string();
            std::thread::spawn(move || {
                let mut llm = Llm::from_model(model, &engine).unwrap();
                barrier.wait();
                let a = llm.complete(&p, &opts).unwrap().tokens;
                let b = llm.complete(&p, &opts).unwrap().tokens;
                (a, b)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (a, b) = h.join().unwrap();
        assert_eq!(
            a, alone[i],
            "session {i}, first run, differs from its run alone"
        );
        assert_eq!(
            b, alone[i],
            "session {i}, second run (cache reset), differs"
        );
    }
}

// ------------------------------------------------------------------ gallery

const DIM: usize = 16;
use edgeai_testutil::CHILD_ENV;
/// Identities each of the two processes enrols.
const PROCESS_ENROLMENTS: usize = 150;

fn config() -> GalleryConfig {
    GalleryConfig {
        dim: DIM,
        ..GalleryConfig::default()
    }
}

/// A distinct embedding per `(writer, i)`: one-hot-ish so identification is unambiguous.
fn embedding(writer: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.01f32; DIM];
    let k = writer * 1000 + i;
    v[k % DIM] = 1.0;
    v[(k / DIM) % DIM] += 0.5;
    v[(k / (DIM * DIM)) % DIM] += 0.25;
    v[(k * 7 + 3) % DIM] -= 0.3;
    v
}

fn name(writer: usize, i: usize) -> String {
    format!("w{writer}-person{i}")
}

fn fresh_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "edgeai-concurrency-{tag}-{}.sqlite",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    p
}

/// Opens the gallery (creating it if needed), enrols `count` identities of `writer`, and
/// after each enrolment identifies it: the caller sees every error.
fn enroll_many(path: &Path, writer: usize, count: usize) -> Result<(), String> {
    let mut g = Gallery::open(path, config()).map_err(|e| format!("open: {e}"))?;
    for i in 0..count {
        let n = name(writer, i);
        g.enroll(&n, &[embedding(writer, i), embedding(writer, i)])
            .map_err(|e| format!("enroll {n}: {e}"))?;
        let id = g
            .identify(&embedding(writer, i), 1)
            .map_err(|e| format!("identify {n}: {e}"))?;
        let best = id.best().map(|m| m.name.as_str());
        if best != Some(n.as_str()) {
            return Err(format!("identify {n}: got {best:?}"));
        }
    }
    Ok(())
}

/// Reopens the file and checks every identity of `writers` x `count` is there, with both
/// embeddings, and identifies as itself.
fn check_all(path: &Path, writers: &[usize], count: usize) {
    let g = Gallery::open(path, config()).unwrap();
    let list = g.list();
    assert_eq!(list.len(), writers.len() * count, "identities: {list:?}");
    for &w in writers {
        for i in 0..count {
            let n = name(w, i);
            assert!(
                list.iter().any(|(l, c)| *l == n && *c == 2),
                "{n} lost or torn: {list:?}"
            );
            let id = g.identify(&embedding(w, i), 1).unwrap();
            assert_eq!(id.best().map(|m| m.name.as_str()), Some(n.as_str()));
        }
    }
}

#[test]
fn gallery_enroll_and_identify_from_several_threads() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    let path = fresh_path("threads");
    // Everyone opens the not-yet-existing file at the same moment (creation races too),
    // and a reader keeps reopening and searching while the writers write.
    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let mut handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (path, barrier) = (path.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                enroll_many(&path, w, PER_WRITER)
            })
        })
        .collect();
    let reader = {
        let (path, barrier) = (path.clone(), Arc::clone(&barrier));
        std::thread::spawn(move || -> Result<(), String> {
            barrier.wait();
            for _ in 0..20 {
                let g = Gallery::open(&path, config()).map_err(|e| format!("reader open: {e}"))?;
                g.identify(&embedding(0, 0), 3)
                    .map_err(|e| format!("reader identify: {e}"))?;
            }
            Ok(())
        })
    };
    handles.push(reader);
    for h in handles {
        h.join().unwrap().unwrap();
    }
    check_all(&path, &(0..WRITERS).collect::<Vec<_>>(), PER_WRITER);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The second process of `gallery_enroll_from_two_processes`: runs only when re-executed
/// with the gallery path in `CHILD_ENV`. It opens the gallery, says `READY`, waits for `GO`
/// on stdin (so both processes write at the same time), then enrols.
#[test]
fn gallery_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Opening creates the file if the parent has not yet: both race on creation too.
    let opened = Gallery::open(Path::new(&path), config());
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    // Reports instead of panicking, so the parent can show the child's error.
    let r = opened
        .map_err(|e| format!("open: {e}"))
        .and_then(|_| enroll_many(Path::new(&path), 1, PROCESS_ENROLMENTS));
    match r {
        Ok(()) => println!("CHILD OK"),
        Err(e) => println!("CHILD ERROR {e}"),
    }
}

#[test]
fn gallery_enroll_from_two_processes() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let path = fresh_path("processes");
    let mut child = edgeai_testutil::child_test("gallery_child_process", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before READY"
        );
    }
    // Both go: the child is writer 1, this process writer 0.
    writeln!(child.stdin.as_mut().unwrap(), "GO").unwrap();
    let mine = enroll_many(&path, 0, PROCESS_ENROLMENTS);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    mine.unwrap();
    assert!(
        status.success() && rest.contains("CHILD OK"),
        "child failed ({status}): {rest}"
    );
    check_all(&path, &[0, 1], PROCESS_ENROLMENTS);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
