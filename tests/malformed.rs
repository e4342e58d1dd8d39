//! The malformed-file corpus: every file is generated here (nothing binary is committed), and
//! every case must be an `Err` whose message names the problem: no panic, no abort, and no
//! allocation larger than the file justifies. A counting global allocator measures, per
//! thread, the largest single allocation and the peak of live bytes while a case runs; the
//! overflow cases (huge counts, lengths, dimensions) assert both stay small.
//!
//! Graph models go through every backend compiled in (`edgeai::available_backends()`).

use std::path::PathBuf;

use edgeai::core::quant::GgmlType;
use edgeai::core::{DType, Error, LoadOptions, ModelSource, Tensor};
use edgeai::llm::gguf::{writer::GgufWriter, GgufFile, Value};
use edgeai::vision::{self, Image, ImageLimits};
use edgeai_testutil::alloc::{measure, Counting, Usage};
use edgeai_testutil::model_path;

// ------------------------------------------------------------------ allocation accounting

#[global_allocator]
static ALLOC: Counting = Counting;

/// Asserts the case stayed within `limit` bytes, both per allocation and at its peak.
fn assert_bounded(case: &str, usage: Usage, limit: usize) {
    assert!(
        usage.largest <= limit && usage.peak <= limit,
        "{case}: allocated too much for its input: {usage:?}, limit {limit} bytes"
    );
}

fn assert_mentions(case: &str, msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            msg.contains(n),
            "{case}: error `{msg}` does not mention `{n}`"
        );
    }
}

fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "edgeai-malformed-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&p, bytes).unwrap();
    p
}

// ------------------------------------------------------------------ GGUF

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small valid GGUF: a few metadata values of each kind and two F32 tensors.
fn gguf_base() -> GgufWriter {
    GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("general.name", Value::String("malformed-test".into()))
        .kv("a.u32", Value::U32(7))
        .kv(
            "a.strings",
            Value::Array(vec![Value::String("x".into()), Value::String("yz".into())]),
        )
        .tensor("t0", &[4, 2], GgmlType::F32, f32_bytes(&[0.5; 8]))
        .tensor("t1", &[8], GgmlType::F32, f32_bytes(&[1.5; 8]))
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `(case, bytes, words the error must contain)`.
fn gguf_cases() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let base = gguf_base().build();
    let t0 = find(&base, b"t0");
    let t1 = find(&base, b"t1");
    // Tensor info: name (u64 len + bytes), n_dims u32, dims u64 each, type u32, offset u64.
    let t0_dims = t0 + 2 + 4;
    let t1_type = t1 + 2 + 4 + 8;
    let t1_offset = t1_type + 4;
    let mut cases = Vec::new();
    let mut c = base.clone();
    c[..4].copy_from_slice(b"GGUX");
    cases.push(("wrong magic", c, vec!["bad magic"]));
    for v in [0u32, 99] {
        let mut c = base.clone();
        put_u32(&mut c, 4, v);
        cases.push((
            if v == 0 { "version 0" } else { "version 99" },
            c,
            vec![
                "unsupported GGUF version",
                if v == 0 { "version 0" } else { "version 99" },
            ],
        ));
    }
    let mut c = base.clone();
    put_u64(&mut c, t1_offset, 1 << 30);
    cases.push(("tensor offset past EOF", c, vec!["t1", "outside the file"]));
    let mut c = base.clone();
    put_u64(&mut c, t1_offset, u64::MAX - 31);
    cases.push((
        "tensor offset near u64::MAX",
        c,
        vec!["t1", "outside the file"],
    ));
    let mut c = base.clone();
    put_u64(&mut c, t0_dims, 1 << 40);
    put_u64(&mut c, t0_dims + 8, 1 << 40);
    cases.push(("dims product overflows u64", c, vec!["t0", "overflow"]));
    let mut c = base.clone();
    put_u64(&mut c, t0_dims, u64::MAX);
    put_u64(&mut c, t0_dims + 8, 1);
    cases.push(("dim of u64::MAX", c, vec!["t0", "overflow or exceed"]));
    let key = find(&base, b"general.name") - 8;
    let mut c = base.clone();
    put_u64(&mut c, key, 1 << 63);
    cases.push((
        "key length 2^63",
        c,
        vec!["string length 9223372036854775808"],
    ));
    let val = find(&base, b"malformed-test") - 8;
    let mut c = base.clone();
    put_u64(&mut c, val, 1 << 63);
    cases.push((
        "string value length 2^63",
        c,
        vec!["string length 9223372036854775808"],
    ));
    // "a.strings": key, value type (u32 = 9), element type (u32 = 8), length (u64).
    let arr = find(&base, b"a.strings") + "a.strings".len() + 8;
    let mut c = base.clone();
    put_u64(&mut c, arr, 1 << 63);
    cases.push((
        "array length 2^63",
        c,
        vec!["array length 9223372036854775808"],
    ));
    let mut c = base.clone();
    put_u64(&mut c, 8, 1 << 63);
    cases.push(("tensor count 2^63", c, vec!["tensor count"]));
    let mut c = base.clone();
    put_u64(&mut c, 16, u64::MAX);
    cases.push(("metadata count u64::MAX", c, vec!["metadata count"]));
    let ty = find(&base, b"a.u32") + "a.u32".len();
    let mut c = base.clone();
    put_u32(&mut c, ty, 4242);
    cases.push((
        "unknown value type",
        c,
        vec!["unknown metadata value type 4242"],
    ));
    let ety = arr - 4;
    let mut c = base.clone();
    put_u32(&mut c, ety, 77);
    cases.push((
        "unknown array element type",
        c,
        vec!["unknown array element type 77"],
    ));
    let mut c = base.clone();
    put_u32(&mut c, t1_type, 1000);
    cases.push(("unknown tensor type id", c, vec!["t1", "type id 1000"]));
    let mut c = base.clone();
    put_u64(&mut c, t1_offset, 3);
    cases.push(("misaligned tensor offset", c, vec!["t1", "not aligned"]));
    let misaligned = gguf_base().kv("general.alignment", Value::U32(48)).build();
    cases.push((
        "alignment not a power of two",
        misaligned,
        vec!["general.alignment", "power of two"],
    ));
    let mut c = base.clone();
    put_u32(&mut c, t0 + 2, 7);
    cases.push(("too many dimensions", c, vec!["t0", "7 dimensions"]));
    let header_end = find(&base, b"t1") + 2 + 4 + 8 + 4 + 8;
    cases.push((
        "truncated in the tensor infos",
        base[..header_end - 5].to_vec(),
        vec!["truncated"],
    ));
    cases.push((
        "truncated in the tensor data",
        base[..base.len() - 4].to_vec(),
        vec!["outside the file"],
    ));
    cases.push(("empty file", Vec::new(), vec!["truncated"]));
    cases
}

#[test]
fn gguf_corpus_from_bytes() {
    // Sanity: the unmodified file parses, so each case fails for its own reason.
    GgufFile::from_bytes(gguf_base().build()).expect("the base file parses");
    for (case, bytes, needles) in gguf_cases() {
        let len = bytes.len();
        let (r, usage) = measure(|| GgufFile::from_bytes(bytes));
        let e = r.err().unwrap_or_else(|| panic!("{case}: parsed"));
        let msg = e.to_string();
        assert!(
            matches!(e, edgeai::llm::Error::Gguf { .. }),
            "{case}: {msg}"
        );
        assert_mentions(case, &msg, &needles);
        // `from_bytes` owns the bytes it was given; parsing a few hundred bytes of header
        // needs a few KiB at most, whatever the counts and lengths claim.
        assert_bounded(case, usage, len + (64 << 10));
    }
}

#[test]
fn gguf_corpus_through_the_llm_loader() {
    // From a file (memory-mapped), through the whole loader: the same errors.
    for (case, bytes, needles) in gguf_cases() {
        let path = temp_file("gguf", &bytes);
        let (r, usage) = measure(|| edgeai::llm::Llm::open(&path, &Default::default()));
        let _ = std::fs::remove_file(&path);
        let msg = r
            .err()
            .unwrap_or_else(|| panic!("{case}: loaded"))
            .to_string();
        assert_mentions(case, &msg, &needles);
        assert!(
            msg.contains(&path.display().to_string()),
            "{case}: `{msg}` lacks the path"
        );
        assert_bounded(case, usage, 64 << 10);
    }
}

/// A llama GGUF whose header claims `block_count` layers but holds none: the loader must
/// fail on the first missing tensor without reserving memory for millions of layers.
#[test]
fn gguf_llama_with_absurd_layer_count() {
    let dim = 32u64;
    let bytes = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.embedding_length", Value::U32(dim as u32))
        .kv("llama.attention.head_count", Value::U32(4))
        .kv("llama.feed_forward_length", Value::U32(64))
        .kv("llama.context_length", Value::U32(64))
        .kv("llama.block_count", Value::U32((1 << 24) - 1))
        .tensor(
            "token_embd.weight",
            &[dim, 4],
            GgmlType::F32,
            f32_bytes(&[0.0; 128]),
        )
        .build();
    let len = bytes.len();
    let (r, usage) = measure(|| {
        let g = GgufFile::from_bytes(bytes)?;
        edgeai::llm::DecoderModel::from_gguf(g)
    });
    let Err(e) = r else {
        panic!("a model without layers loaded")
    };
    let msg = e.to_string();
    assert_mentions(
        "absurd layer count",
        &msg,
        &["blk.0.attn_norm.weight", "missing"],
    );
    assert_bounded("absurd layer count", usage, len + (64 << 10));
}

// ------------------------------------------------------------------ ONNX

/// `Y = op(X, [initializer W])` with X, Y float `[N, 3]`; `init` is `(name, dims, raw data)`.
fn onnx_model(op: &str, init: Option<(&str, &[i64], &[u8])>) -> Vec<u8> {
    onnx_model_with_output(op, init, "Y")
}

/// As [`onnx_model`], with the graph output called `output` (the node still writes `Y`).
fn onnx_model_with_output(op: &str, init: Option<(&str, &[i64], &[u8])>, output: &str) -> Vec<u8> {
    use edgeai::onnx::{build, proto::dt};
    let mut inputs = vec!["X"];
    inputs.extend(init.map(|(name, _, _)| name));
    let mut node = build::node(op, &inputs, &["Y"]);
    node.name = "node0".into();
    let inits = init
        .map(|(name, dims, raw)| build::tensor_raw(name, dims, dt::FLOAT, raw.to_vec()))
        .into_iter()
        .collect();
    let nx = [build::sym("N"), build::fixed(3)];
    let graph = build::graph(
        "malformed",
        vec![node],
        inits,
        vec![build::value("X", dt::FLOAT, &nx)],
        vec![build::value(output, dt::FLOAT, &nx)],
    );
    build::model(graph, 13).to_bytes()
}

fn relu_model() -> Vec<u8> {
    onnx_model("Relu", None)
}

fn backends() -> Vec<Box<dyn edgeai::core::Backend>> {
    edgeai_testutil::backends(edgeai::available_backends(), edgeai::backend)
}

/// Loads `bytes` with `b`; `None` when the backend's runtime is not installed (ort without
/// its shared library), after printing why.
fn load(
    b: &dyn edgeai::core::Backend,
    bytes: Vec<u8>,
) -> Option<edgeai::core::Result<Box<dyn edgeai::core::Model>>> {
    match b.load(ModelSource::Bytes(bytes), &LoadOptions::new()) {
        Err(e @ Error::BackendUnavailable { .. }) => {
            eprintln!("skipping {}: {e}", b.name());
            None
        }
        r => Some(r),
    }
}

#[test]
fn onnx_generated_model_runs() {
    // The corpus below is only meaningful if the intact model works on every backend.
    for b in backends() {
        let Some(r) = load(b.as_ref(), relu_model()) else {
            continue;
        };
        let m = r.unwrap_or_else(|e| panic!("{}: {e}", b.name()));
        let x = Tensor::from_vec(vec![2, 3], vec![-1.0f32, 2.0, -3.0, 4.0, 0.0, -0.5]).unwrap();
        let y = m.run(vec![x]).unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[0.0, 2.0, 0.0, 4.0, 0.0, 0.0],
            "{}",
            b.name()
        );
    }
}

#[test]
fn onnx_truncated_at_ten_points() {
    let mut files = vec![("generated Relu".to_string(), relu_model())];
    if let Some(p) = model_path("face/yunet.onnx") {
        files.push(("yunet.onnx".into(), std::fs::read(p).unwrap()));
    } else {
        eprintln!("skipping yunet.onnx: not fetched (run scripts/fetch-models)");
    }
    for b in backends() {
        for (name, bytes) in &files {
            for i in 0..10 {
                // 0 bytes, then nine cuts spread over the file (never the whole file).
                let cut = bytes.len() * i / 10;
                let case = format!("{}: {name} truncated at {cut}/{}", b.name(), bytes.len());
                let Some(r) = load(b.as_ref(), bytes[..cut].to_vec()) else {
                    continue;
                };
                let e = r.err().unwrap_or_else(|| panic!("{case}: loaded"));
                assert!(
                    matches!(e, Error::InvalidModel { .. }),
                    "{case}: unexpected error kind: {e}"
                );
                assert!(e.to_string().len() > 20, "{case}: uninformative `{e}`");
            }
        }
    }
}

#[test]
fn onnx_random_bytes() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in backends() {
        for (i, len) in [1usize, 2, 16, 333, 10_000, 100_000]
            .into_iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let case = format!("{}: random bytes #{i} ({len})", b.name());
            let Some(r) = load(b.as_ref(), bytes) else {
                continue;
            };
            let e = r.err().unwrap_or_else(|| panic!("{case}: loaded"));
            assert!(matches!(e, Error::InvalidModel { .. }), "{case}: {e}");
        }
    }
}

#[test]
fn onnx_unknown_operator_is_named() {
    for b in backends() {
        let Some(r) = load(b.as_ref(), onnx_model("EdgeaiFrobnicate", None)) else {
            continue;
        };
        match r {
            Err(Error::UnsupportedOperator { ops, .. }) => {
                assert_eq!(ops, vec!["EdgeaiFrobnicate".to_string()], "{}", b.name())
            }
            Err(e) => panic!("{}: expected UnsupportedOperator, got {e}", b.name()),
            Ok(_) => panic!("{}: a model with an unknown op loaded", b.name()),
        }
    }
}

/// An initializer that claims `2^31 x 2^31` floats (16 EiB) but carries 4 bytes: an error,
/// not an attempt to allocate what the dimensions claim.
#[test]
fn onnx_initializer_dims_overflow() {
    let huge: &[i64] = &[1 << 31, 1 << 31];
    let bytes = onnx_model("Add", Some(("W", huge, &[0, 0, 128, 63])));
    for b in backends() {
        let case = format!("{}: initializer 2^31 x 2^31", b.name());
        let len = bytes.len();
        let (r, usage) = measure(|| load(b.as_ref(), bytes.clone()));
        let Some(r) = r else { continue };
        let e = r.err().unwrap_or_else(|| panic!("{case}: loaded"));
        assert!(matches!(e, Error::InvalidModel { .. }), "{case}: {e}");
        eprintln!("{case}: {e} ({usage:?})");
        assert_bounded(&case, usage, len * 64 + (16 << 20));
    }
}

/// A graph output that no node produces (tract 0.23.9 panicked on it; found by fuzz/).
#[test]
fn onnx_graph_output_without_producer() {
    for b in backends() {
        let Some(r) = load(b.as_ref(), onnx_model_with_output("Relu", None, "a")) else {
            continue;
        };
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{}: a dangling graph output loaded", b.name()));
        assert!(matches!(e, Error::InvalidModel { .. }), "{}: {e}", b.name());
    }
}

#[test]
fn onnx_wrong_inputs_at_run_time_name_the_input() {
    for b in backends() {
        let Some(r) = load(b.as_ref(), relu_model()) else {
            continue;
        };
        let m = r.unwrap();
        let name = b.name();
        // Wrong dtype.
        let e = m
            .run(vec![Tensor::from_vec(vec![1, 3], vec![1i64, 2, 3]).unwrap()])
            .unwrap_err();
        assert!(matches!(e, Error::InputDType { .. }), "{name}: {e}");
        assert_mentions(name, &e.to_string(), &["`X`", "f32", "i64"]);
        // Wrong rank, wrong fixed dimension.
        for shape in [vec![3usize], vec![2, 4], vec![1, 3, 1]] {
            let e = m
                .run(vec![Tensor::zeros(DType::F32, shape.clone()).unwrap()])
                .unwrap_err();
            assert!(
                matches!(e, Error::InputShape { .. }),
                "{name} {shape:?}: {e}"
            );
            assert_mentions(name, &e.to_string(), &["`X`"]);
        }
        // Wrong count.
        let e = m.run(vec![]).unwrap_err();
        assert!(matches!(e, Error::InputCount { .. }), "{name}: {e}");
        let x = || Tensor::zeros(DType::F32, vec![1, 3]).unwrap();
        let e = m.run(vec![x(), x()]).unwrap_err();
        assert!(matches!(e, Error::InputCount { .. }), "{name}: {e}");
        // Unknown name.
        let e = m.run_named(vec![("Z".into(), x())]).unwrap_err();
        assert_mentions(name, &e.to_string(), &["`Z`", "X"]);
    }
}

// ------------------------------------------------------------------ images

fn png_of(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg_of(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose IHDR claims `w x h` (valid CRC) followed by the pixel data of a 16x16 image.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = png_of(16, 16);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A JPEG whose SOF0 claims `w x h` (16-bit fields).
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut b = jpeg_of(16, 16);
    let sof = find(&b, &[0xff, 0xc0]);
    // Marker (2), length (2), precision (1), height (2), width (2).
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

#[test]
fn images_decompression_bombs_are_refused_before_decoding() {
    let limits = ImageLimits::default();
    let cases = [
        (
            "PNG 100000x100000",
            png_claiming(100_000, 100_000),
            100_000u64,
            100_000u64,
        ),
        (
            "PNG 2^31-1 x 2^31-1",
            png_claiming(i32::MAX as u32, i32::MAX as u32),
            i32::MAX as u64,
            i32::MAX as u64,
        ),
        (
            "JPEG 65535x65535",
            jpeg_claiming(65_535, 65_535),
            65_535,
            65_535,
        ),
    ];
    for (case, bytes, w, h) in cases {
        let len = bytes.len();
        let (r, usage) = measure(|| Image::decode(&bytes, &limits));
        let e = r.err().unwrap_or_else(|| panic!("{case}: decoded"));
        match &e {
            vision::Error::ImageTooLarge {
                width,
                height,
                limit,
                ..
            } => {
                assert_eq!(
                    (*width, *height, *limit),
                    (w, h, limits.max_pixels),
                    "{case}"
                )
            }
            // The PNG decoder itself refuses dimensions above 2^31 - 1 per side.
            vision::Error::Decode { reason, .. } if w > 1 << 20 => {
                assert!(!reason.is_empty(), "{case}")
            }
            other => panic!("{case}: unexpected error {other}"),
        }
        assert_mentions(case, &e.to_string(), &["image"]);
        assert_bounded(case, usage, len + (1 << 20));
    }
}

#[test]
fn images_pixel_limit_is_configurable() {
    let png = png_of(40, 30);
    let tight = ImageLimits { max_pixels: 1000 };
    let e = Image::decode(&png, &tight).unwrap_err();
    assert!(
        matches!(
            e,
            vision::Error::ImageTooLarge {
                pixels: 1200,
                limit: 1000,
                ..
            }
        ),
        "{e}"
    );
    assert_mentions(
        "40x30 under a 1000-pixel limit",
        &e.to_string(),
        &["40x30", "1000"],
    );
    let ok = Image::decode(&png, &ImageLimits { max_pixels: 1200 }).unwrap();
    assert_eq!((ok.width(), ok.height()), (40, 30));
}

#[test]
fn images_zero_sized() {
    for (case, bytes) in [
        ("PNG 0x16", png_claiming(0, 16)),
        ("PNG 16x0", png_claiming(16, 0)),
        ("JPEG 0x16", jpeg_claiming(0, 16)),
        ("JPEG 16x0", jpeg_claiming(16, 0)),
    ] {
        let e = Image::decode(&bytes, &ImageLimits::default())
            .err()
            .unwrap_or_else(|| panic!("{case}: decoded"));
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                vision::Error::InvalidImage(_) | vision::Error::Decode { .. }
            ),
            "{case}: {msg}"
        );
        eprintln!("{case}: {msg}");
    }
    let e = Image::from_raw(0, 5, edgeai::vision::PixelFormat::Rgb8, &[]).unwrap_err();
    assert_mentions("raw 0x5", &e.to_string(), &["zero size"]);
    let e = Image::from_raw(
        u32::MAX,
        u32::MAX,
        edgeai::vision::PixelFormat::Rgba8,
        &[1, 2, 3],
    )
    .unwrap_err();
    assert_mentions(
        "raw 2^32-1 squared",
        &e.to_string(),
        &["4294967295x4294967295"],
    );
}

#[test]
fn images_truncated_and_empty() {
    for (kind, bytes) in [("PNG", png_of(48, 40)), ("JPEG", jpeg_of(48, 40))] {
        // Intact first: the cuts fail for being cut.
        Image::decode(&bytes, &ImageLimits::default()).unwrap();
        for i in 0..10 {
            let cut = bytes.len() * i / 10;
            let case = format!("{kind} truncated at {cut}/{}", bytes.len());
            let (r, usage) = measure(|| Image::decode(&bytes[..cut], &ImageLimits::default()));
            let e = r.err().unwrap_or_else(|| panic!("{case}: decoded"));
            assert!(matches!(e, vision::Error::Decode { .. }), "{case}: {e}");
            assert_mentions(&case, &e.to_string(), &["cannot decode image"]);
            assert_bounded(&case, usage, 1 << 20);
        }
    }
    let e = Image::decode(b"definitely not an image", &ImageLimits::default()).unwrap_err();
    assert_mentions("text", &e.to_string(), &["not a JPEG or PNG"]);
    let path = temp_file("empty.png", b"");
    let e = Image::open(&path, &ImageLimits::default()).unwrap_err();
    let _ = std::fs::remove_file(&path);
    assert_mentions(
        "empty file",
        &e.to_string(),
        &["empty", &path.display().to_string()],
    );
}

// ------------------------------------------------------------------ .npy

/// A `.npy` file (version 1) with `header` as its dictionary and `data` after it.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_bad_headers() {
    use edgeai::core::npy;
    let ok = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        &[0, 0, 128, 63, 0, 0, 0, 64],
    );
    assert_eq!(
        npy::from_bytes(&ok).unwrap().as_slice::<f32>().unwrap(),
        &[1.0, 2.0]
    );
    let f4 =
        |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut long_header = ok.clone();
    long_header[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    let mut v9 = ok.clone();
    v9[6] = 9;
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty", Vec::new(), &["magic"]),
        (
            "wrong magic",
            b"\x93NUMPX\x01\x00\x10\x00{}".to_vec(),
            &["magic"],
        ),
        ("version 9", v9, &["version 9"]),
        (
            "header length past EOF",
            long_header,
            &["truncated header", "65535"],
        ),
        ("not a dict", npy("[1, 2, 3]", &[]), &["bad header"]),
        (
            "unknown key",
            npy("{'descr': '<f4', 'color': 'red', }", &[]),
            &["color"],
        ),
        (
            "complex128",
            npy(
                "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }",
                &[0; 16],
            ),
            &["complex"],
        ),
        (
            "structured dtype",
            npy(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                &[0; 4],
            ),
            &["descr"],
        ),
        (
            "big-endian",
            npy(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
                &[0; 4],
            ),
            &["big-endian"],
        ),
        (
            "fortran order",
            npy(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }",
                &[0; 4],
            ),
            &["fortran_order"],
        ),
        ("negative dim", npy(&f4("(-1,)"), &[0; 4]), &["shape"]),
        (
            "data too short",
            npy(&f4("(3,)"), &[0; 8]),
            &["needs 12 data bytes", "has 8"],
        ),
        (
            "data too long",
            npy(&f4("(1,)"), &[0; 8]),
            &["needs 4 data bytes", "has 8"],
        ),
    ];
    for (case, bytes, needles) in cases {
        let e = npy::from_bytes(&bytes)
            .err()
            .unwrap_or_else(|| panic!("{case}: parsed"));
        assert_mentions(case, &e.to_string(), needles);
    }
}

/// Shapes whose element count overflows, or claims far more than the file holds: an error
/// before any allocation of that size.
#[test]
fn npy_overflowing_and_huge_shapes() {
    use edgeai::core::npy;
    for (case, shape, needle) in [
        (
            "product overflows usize",
            "(4294967296, 4294967296, 16)",
            "too many elements",
        ),
        (
            "byte size overflows usize",
            "(4611686018427387904,)",
            "too many elements",
        ),
        (
            "2^40 floats in 8 bytes",
            "(1099511627776,)",
            "needs 4398046511104 data bytes",
        ),
    ] {
        let bytes = npy(
            &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
            &[0; 8],
        );
        let len = bytes.len();
        let (r, usage) = measure(|| npy::from_bytes(&bytes));
        let e = r.err().unwrap_or_else(|| panic!("{case}: parsed"));
        assert_mentions(case, &e.to_string(), &[needle]);
        assert_bounded(case, usage, len + (16 << 10));
    }
}
