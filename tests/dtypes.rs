//! Issue 23: every ONNX element type edgeai's `DType` covers, through every compiled-in
//! backend, against an explicit expectation table. A one-op `Identity` graph per dtype must
//! either return its input bit for bit, with the declared dtype, or be refused with an error
//! that names the dtype. A backend that starts refusing, starts accepting, or silently converts
//! (returns another dtype or other values) fails this test until the table says so.
//!
//! Run with `cargo test --test dtypes --features <backend>` (or `full`).

use edgeai::core::{DType, LoadOptions, ModelSource, Tensor};
use edgeai_onnx::build;

/// What a backend does with an `Identity` graph of one dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Loads, runs, and returns the input exactly.
    Exact,
    /// Load or run fails with an error naming the dtype.
    Refused,
}

use Expect::{Exact, Refused};

/// The dtypes issue 23 added, in the order of each row below.
const NEW: [DType; 6] = [
    DType::Bool,
    DType::F64,
    DType::I16,
    DType::U16,
    DType::U32,
    DType::U64,
];

/// Per backend, per dtype in [`NEW`]'s order.
fn expectations(backend: &str) -> [Expect; 6] {
    match backend {
        //            bool   f64      i16      u16      u32      u64
        "tract" => [Exact, Exact, Exact, Exact, Exact, Exact],
        "ort" => [Exact, Exact, Exact, Exact, Exact, Exact],
        // candle-onnx takes f32/f16/u8/bool/i64 graph inputs only.
        "candle" => [Exact, Refused, Refused, Refused, Refused, Refused],
        // burn holds integers and bools as i64 (exact) and floats as f32 (f64 refused).
        "burn" => [Exact, Refused, Exact, Exact, Exact, Exact],
        other => panic!("backend `{other}` has no row in the dtype table: add one"),
    }
}

/// Sample values for each dtype, extremes included (u64 stays within i64, see
/// [`burn_refuses_u64_beyond_i64`]).
fn sample(dt: DType) -> Tensor {
    let shape = vec![2, 2];
    match dt {
        DType::Bool => Tensor::from_vec(shape, vec![true, false, false, true]),
        DType::F64 => Tensor::from_vec(shape, vec![0.1f64, -1e300, f64::MIN_POSITIVE, 3.0]),
        DType::I16 => Tensor::from_vec(shape, vec![i16::MIN, -1, 0, i16::MAX]),
        DType::U16 => Tensor::from_vec(shape, vec![0u16, 1, 40000, u16::MAX]),
        DType::U32 => Tensor::from_vec(shape, vec![0u32, 1, 3_000_000_000, u32::MAX]),
        DType::U64 => Tensor::from_vec(shape, vec![0u64, 1, 1 << 40, i64::MAX as u64]),
        other => panic!("no sample for {other}"),
    }
    .unwrap()
}

fn identity(dt: DType) -> Vec<u8> {
    let elem = edgeai_onnx::dtype_elem_type(dt);
    let dims = [build::fixed(2), build::fixed(2)];
    let graph = build::graph(
        "identity",
        vec![build::node("Identity", &["x"], &["y"])],
        vec![],
        vec![build::value("x", elem, &dims)],
        vec![build::value("y", elem, &dims)],
    );
    build::model(graph, 13).to_bytes()
}

fn names_dtype(msg: &str, dt: DType) -> bool {
    let m = msg.to_lowercase();
    let onnx = edgeai_onnx::elem_type_name(edgeai_onnx::dtype_elem_type(dt));
    m.contains(dt.name()) || m.contains(onnx)
}

fn backends() -> Vec<Box<dyn edgeai::core::Backend>> {
    edgeai_testutil::backends(edgeai::available_backends(), edgeai::backend)
}

#[test]
fn onnx_codes_round_trip_for_every_dtype() {
    for dt in DType::ALL {
        let code = edgeai_onnx::dtype_elem_type(dt);
        assert_eq!(edgeai_onnx::elem_type_dtype(code), Some(dt), "{dt}");
    }
    for (code, dt) in [
        (9, DType::Bool),
        (11, DType::F64),
        (5, DType::I16),
        (4, DType::U16),
        (12, DType::U32),
        (13, DType::U64),
    ] {
        assert_eq!(edgeai_onnx::dtype_elem_type(dt), code);
    }
    let info = edgeai_onnx::OnnxInfo::parse(&identity(DType::U64)).unwrap();
    assert_eq!(info.inputs[0].dtype(), Some(DType::U64));
}

#[test]
fn identity_per_dtype_matches_the_table() {
    let mut failures = Vec::new();
    for b in backends() {
        let row = expectations(b.name());
        for (dt, want) in NEW.into_iter().zip(row) {
            let input = sample(dt);
            let got = b
                .load(ModelSource::Bytes(identity(dt)), &LoadOptions::new())
                .and_then(|m| {
                    let spec = &m.inputs()[0];
                    if spec.dtype != dt {
                        return Err(edgeai::core::Error::Tensor(format!(
                            "input spec says {}, the graph says {dt}",
                            spec.dtype
                        )));
                    }
                    m.run(vec![input.clone()])
                });
            let ctx = format!("{} / {dt}", b.name());
            match (want, got) {
                (Exact, Ok(out)) => {
                    if out.len() != 1 || out[0] != input {
                        failures.push(format!("{ctx}: expected {input:?}, got {out:?}"));
                    }
                }
                (Exact, Err(e)) => failures.push(format!("{ctx}: expected to run, got: {e}")),
                (Refused, Ok(out)) => failures.push(format!(
                    "{ctx}: expected a refusal, it ran and returned {out:?} (update the table)"
                )),
                (Refused, Err(e)) => {
                    if !names_dtype(&e.to_string(), dt) {
                        failures.push(format!("{ctx}: refusal does not name the dtype: {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wrong_new_dtype_input_is_an_input_dtype_error() {
    // A u32 tensor into a u64 graph, on the backends that take u64: a typed error, no cast.
    for b in backends() {
        if expectations(b.name())[5] != Exact {
            continue;
        }
        let m = b
            .load(
                ModelSource::Bytes(identity(DType::U64)),
                &LoadOptions::new(),
            )
            .unwrap();
        let e = m.run(vec![sample(DType::U32)]).unwrap_err();
        assert!(
            matches!(e, edgeai::core::Error::InputDType { .. }),
            "{}: {e}",
            b.name()
        );
    }
}

#[test]
fn burn_refuses_u64_beyond_i64() {
    for b in backends() {
        let m = b
            .load(
                ModelSource::Bytes(identity(DType::U64)),
                &LoadOptions::new(),
            )
            .ok();
        let Some(m) = m else { continue };
        let big = Tensor::from_vec(vec![2, 2], vec![0u64, 1, u64::MAX, 5]).unwrap();
        match (b.name(), m.run(vec![big.clone()])) {
            ("burn", Err(e)) => assert!(e.to_string().contains("u64"), "{e}"),
            ("burn", Ok(out)) => panic!("burn ran u64::MAX through i64: {out:?}"),
            (name, Ok(out)) => assert_eq!(out[0], big, "{name}"),
            (name, Err(e)) => panic!("{name}: {e}"),
        }
    }
}
