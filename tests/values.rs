//! Issue 19: `Model::run_values`, outputs kept in a backend's own form between runs, on every
//! compiled-in backend. A hand-built `y = x + x` graph (edgeai-onnx) is run with its output
//! kept, then fed its own output back; asserted:
//! - ONNX Runtime and tract hand back their own values (`Value::Backend`, naming the backend),
//!   candle and burn host tensors (the default `run_values`), and the values read back equal
//!   `Model::run`'s host results;
//! - a value fed back as it is gives the same result as its host copy (2x, then 4x);
//! - a value of another backend goes into a run through a host copy;
//! - a kept value of the wrong shape or dtype is refused with `InputShape` / `InputDType`
//!   before the engine sees it, and a keep list of the wrong length with `InvalidArgument`.

use edgeai::core::{DType, Error, LoadOptions, Model, ModelSource, Tensor, Value};
use edgeai_onnx::build;

/// `y = Add(x, x)` on `[rows, 3]` tensors of `elem`.
fn doubler(rows: usize, dt: DType) -> Vec<u8> {
    let elem = edgeai_onnx::dtype_elem_type(dt);
    let dims = [build::fixed(rows as i64), build::fixed(3)];
    let graph = build::graph(
        "doubler",
        vec![build::node("Add", &["x", "x"], &["y"])],
        vec![],
        vec![build::value("x", elem, &dims)],
        vec![build::value("y", elem, &dims)],
    );
    build::model(graph, 13).to_bytes()
}

fn load(b: &dyn edgeai::core::Backend, rows: usize, dt: DType) -> Box<dyn Model> {
    b.load(ModelSource::Bytes(doubler(rows, dt)), &LoadOptions::new())
        .unwrap_or_else(|e| panic!("{}: {e}", b.name()))
}

fn x() -> Tensor {
    Tensor::from_vec(vec![2, 3], vec![1.0f32, -2.0, 0.5, 3.0, 1e-3, -7.25]).unwrap()
}

fn times(t: &Tensor, k: f32) -> Tensor {
    let v = t.as_slice::<f32>().unwrap().iter().map(|a| a * k).collect();
    Tensor::from_vec(t.shape().to_vec(), v).unwrap()
}

fn backends() -> Vec<Box<dyn edgeai::core::Backend>> {
    edgeai_testutil::backends(edgeai::available_backends(), edgeai::backend)
}

/// Whether `backend` keeps values of its own (else `run_values` hands back host tensors).
fn owns_values(backend: &str) -> bool {
    matches!(backend, "ort" | "tract")
}

#[test]
fn kept_outputs_are_the_backends_values_and_feed_the_next_run() {
    let all = backends();
    let names: Vec<&str> = all.iter().map(|b| b.name()).collect();
    assert!(names.contains(&"tract"), "{names:?}");
    assert_eq!(names.contains(&"ort"), cfg!(feature = "ort"), "{names:?}");
    for b in all {
        let name = b.name().to_string();
        let m = load(b.as_ref(), 2, DType::F32);
        let host = m.run(vec![x()]).unwrap();
        assert_eq!(host[0], times(&x(), 2.0), "{name}: run");

        let out = m.run_values(vec![x().into()], &[true]).unwrap();
        assert_eq!(out.len(), 1);
        let kept = out.into_iter().next().unwrap();
        assert_eq!(kept.shape(), &[2, 3], "{name}");
        assert_eq!(kept.dtype(), DType::F32, "{name}");
        if owns_values(&name) {
            assert_eq!(kept.backend(), Some(name.as_str()), "{name}: {kept:?}");
        } else {
            assert!(kept.is_host(), "{name}: {kept:?}");
        }
        assert_eq!(kept.to_tensor().unwrap(), host[0], "{name}: kept vs run");

        // Fed back as it is, asked for on the host this time.
        let again = m.run_values(vec![kept], &[false]).unwrap();
        assert!(again[0].is_host(), "{name}");
        assert_eq!(
            again.into_iter().next().unwrap().into_tensor().unwrap(),
            times(&x(), 4.0),
            "{name}: second run on the kept value"
        );

        // An empty keep list asks for every output on the host.
        let plain = m.run_values(vec![x().into()], &[]).unwrap();
        assert!(plain[0].is_host(), "{name}");
    }
}

#[test]
fn a_value_of_another_backend_goes_in_through_a_host_copy() {
    let all = backends();
    for from in &all {
        let kept = load(from.as_ref(), 2, DType::F32)
            .run_values(vec![x().into()], &[true])
            .unwrap()
            .remove(0);
        for to in &all {
            let m = load(to.as_ref(), 2, DType::F32);
            let got = m
                .run_values(
                    vec![Value::Backend(Box::new(Copy(kept.to_tensor().unwrap())))],
                    &[],
                )
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.name(), to.name()));
            assert_eq!(
                got.into_iter().next().unwrap().into_tensor().unwrap(),
                times(&x(), 4.0),
                "{} -> {}",
                from.name(),
                to.name()
            );
        }
        // And the real value itself, into every other backend.
        for to in all.iter().filter(|t| t.name() != from.name()) {
            let m = load(to.as_ref(), 2, DType::F32);
            let v = load(from.as_ref(), 2, DType::F32)
                .run_values(vec![x().into()], &[true])
                .unwrap()
                .remove(0);
            let got = m.run_values(vec![v], &[]).unwrap().remove(0);
            assert_eq!(
                got.into_tensor().unwrap(),
                times(&x(), 4.0),
                "{} value -> {}",
                from.name(),
                to.name()
            );
        }
    }
}

/// A value of a backend no model knows: every backend must read it through `to_tensor`.
#[derive(Debug)]
struct Copy(Tensor);

impl edgeai::core::BackendValue for Copy {
    fn backend(&self) -> &str {
        "elsewhere"
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn to_tensor(&self) -> edgeai::core::Result<Tensor> {
        Ok(self.0.clone())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send + Sync> {
        self
    }
}

#[test]
fn kept_values_of_the_wrong_shape_or_dtype_are_refused_by_name() {
    for b in backends() {
        let name = b.name().to_string();
        let m = load(b.as_ref(), 2, DType::F32);
        let three_rows = load(b.as_ref(), 3, DType::F32)
            .run_values(
                vec![Tensor::from_vec(vec![3, 3], vec![1f32; 9]).unwrap().into()],
                &[true],
            )
            .unwrap()
            .remove(0);
        match m.run_values(vec![three_rows], &[true]) {
            Err(Error::InputShape { name: n, got, .. }) => {
                assert_eq!(n, "x", "{name}");
                assert_eq!(got, vec![3, 3], "{name}");
            }
            other => panic!("{name}: expected InputShape, got {other:?}"),
        }
        let ints = load(b.as_ref(), 2, DType::I64)
            .run_values(
                vec![Tensor::from_vec(vec![2, 3], vec![1i64; 6]).unwrap().into()],
                &[true],
            )
            .unwrap()
            .remove(0);
        assert!(
            matches!(
                m.run_values(vec![ints], &[]),
                Err(Error::InputDType {
                    expected: DType::F32,
                    got: DType::I64,
                    ..
                })
            ),
            "{name}"
        );
        match m.run_values(vec![x().into()], &[true, true]) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("2 keep flags"), "{msg}"),
            other => panic!("{name}: expected InvalidArgument, got {other:?}"),
        }
        match m.run_values(vec![], &[]) {
            Err(Error::InputCount {
                expected: 1,
                got: 0,
                ..
            }) => {}
            other => panic!("{name}: expected InputCount, got {other:?}"),
        }
    }
}
