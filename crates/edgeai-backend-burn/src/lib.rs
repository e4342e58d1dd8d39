//! # edgeai-backend-burn
//!
//! An edgeai backend on [burn](https://crates.io/crates/burn)'s tensor operations that loads
//! ONNX models **at run time**. burn's own ONNX import (`burn-import` / `onnx-ir`) generates
//! Rust code at build time, which does not fit a library whose users pick model files at run
//! time; this crate instead reads the ONNX protobuf itself, checks every operator against the
//! list it implements, and executes the graph node by node with burn backend operations
//! (`conv2d`, `max_pool2d`, `float_matmul`, `interpolate`, `softmax`...).
//!
//! - Engines (Cargo features): `flex` (default; burn's portable pure-Rust CPU backend, the
//!   recommended one since burn 0.22) and `ndarray` (burn's older ndarray backend, deprecated
//!   upstream, kept for comparison). [`BurnBackend::new`] picks `flex` when it is compiled in;
//!   [`BurnBackend::with_engine`] picks explicitly.
//! - Float tensors run in burn; integer tensors (the `Shape` / `Gather` / `Slice` / `Concat` /
//!   `Cast` subgraphs that compute shapes) are evaluated on the host. Nodes whose inputs are
//!   all constant are folded once at load time.
//! - With [`OptLevel::Basic`] or [`OptLevel::All`] (the default), a `BatchNormalization` that
//!   follows a `Conv` with constant weights is folded into the convolution at load time.
//! - [`LoadOptions::threads`] runs the model in a rayon pool of that size (burn's CPU
//!   kernels parallelise with rayon); `None` uses rayon's global pool.
//! - A loaded model holds its weights as burn tensors (cheap, reference-counted clones per
//!   run) and no lock: one model serves many threads at once.
//! - Operators the crate lacks are reported at load time, all of them in one
//!   [`Error::UnsupportedOperator`]; a corrupt or truncated file is [`Error::InvalidModel`];
//!   a shape problem found while running is [`Error::Run`]. Library code does not panic on
//!   bad files: a panic inside a burn kernel is caught and returned as [`Error::Run`].
//!
//! Supported operators: see [`SUPPORTED_OPS`].
//!
//! [`OptLevel::Basic`]: edgeai_core::OptLevel::Basic
//! [`OptLevel::All`]: edgeai_core::OptLevel::All
//!
//! ```no_run
//! use edgeai_backend_burn::BurnBackend;
//! use edgeai_core::{Backend, DType, LoadOptions, Tensor};
//!
//! let model = BurnBackend::new().load("models/face/sface.onnx".into(), &LoadOptions::new())?;
//! let out = model.run(vec![Tensor::zeros(DType::F32, vec![1, 3, 112, 112])?])?;
//! assert_eq!(out[0].shape(), &[1, 128]);
//! # Ok::<(), edgeai_core::Error>(())
//! ```
#![warn(missing_docs)]

mod error;
mod ops;
mod parse;
mod passes;
mod plan;
mod run;

use edgeai_core::{Backend, Error, LoadOptions, Model, ModelFormat, ModelSource, Result};

pub use run::BurnModel;

const NAME: &str = "burn";

/// The ONNX operators (default domain) this backend executes.
pub const SUPPORTED_OPS: &[&str] = ops::SUPPORTED;

/// Which burn backend executes the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// `burn-flex`: burn's portable pure-Rust CPU backend (feature `flex`, the default).
    Flex,
    /// `burn-ndarray`: burn's ndarray CPU backend (feature `ndarray`; deprecated upstream).
    NdArray,
}

impl Engine {
    /// The engine [`BurnBackend::new`] uses: `Flex` when compiled in, else `NdArray`.
    pub fn default_compiled() -> Self {
        if cfg!(feature = "flex") || !cfg!(feature = "ndarray") {
            Engine::Flex
        } else {
            Engine::NdArray
        }
    }

    /// Whether this engine's Cargo feature is enabled.
    pub fn is_compiled(self) -> bool {
        match self {
            Engine::Flex => cfg!(feature = "flex"),
            Engine::NdArray => cfg!(feature = "ndarray"),
        }
    }
}

/// The burn backend. Cheap to create; holds only the engine choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnBackend {
    engine: Engine,
}

impl Default for BurnBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl BurnBackend {
    /// The backend on the default engine ([`Engine::default_compiled`]).
    pub fn new() -> Self {
        BurnBackend {
            engine: Engine::default_compiled(),
        }
    }

    /// The backend on a chosen engine. Loading fails with [`Error::BackendUnavailable`] when
    /// that engine's Cargo feature is not enabled.
    pub fn with_engine(engine: Engine) -> Self {
        BurnBackend { engine }
    }

    /// The engine models are loaded on.
    pub fn engine(&self) -> Engine {
        self.engine
    }
}

impl Backend for BurnBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        self.check_format(&source)?;
        if !self.engine.is_compiled() {
            // Say so before reading anything: no file can load on a missing engine.
            return Err(unavailable(self.engine));
        }
        let origin = source.origin();
        let bytes = source.into_bytes()?;
        let graph = parse::Graph::parse(&bytes, &origin)?;
        match self.engine {
            #[cfg(feature = "flex")]
            Engine::Flex => {
                run::load_on::<burn_flex::Flex>(graph, Default::default(), options, &origin)
            }
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // burn-ndarray is deprecated upstream; offered for comparison
            Engine::NdArray => run::load_on::<burn_ndarray::NdArray>(
                graph,
                burn_ndarray::NdArrayDevice::Cpu,
                options,
                &origin,
            ),
            #[allow(unreachable_patterns)]
            other => Err(unavailable(other)),
        }
    }
}

fn unavailable(engine: Engine) -> Error {
    let feature = match engine {
        Engine::Flex => "flex",
        Engine::NdArray => "ndarray",
    };
    Error::BackendUnavailable {
        backend: NAME.into(),
        reason: format!("edgeai-backend-burn was built without the `{feature}` feature"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeai_core::{DType, Tensor};
    use edgeai_onnx::build::{self, attr_int, attr_string, fixed, sym};
    use edgeai_onnx::proto::{dt, NodeProto, TensorProto, ValueInfoProto};

    fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dims: Vec<_> = dims
            .iter()
            .map(|&d| if d > 0 { fixed(d) } else { sym("n") })
            .collect();
        build::value(name, dt::FLOAT, &dims)
    }

    fn node(
        op: &str,
        ins: &[&str],
        outs: &[&str],
        attrs: Vec<edgeai_onnx::proto::AttributeProto>,
    ) -> NodeProto {
        attrs
            .into_iter()
            .fold(build::node(op, ins, outs), NodeProto::with)
    }

    fn model(
        nodes: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        inp: ValueInfoProto,
        out: ValueInfoProto,
    ) -> Vec<u8> {
        build::model(build::graph("g", nodes, inits, vec![inp], vec![out]), 13).to_bytes()
    }

    fn i64s(name: &str, v: &[i64]) -> TensorProto {
        build::tensor_i64(name, &[v.len() as i64], v)
    }

    #[test]
    fn all_unsupported_operators_are_listed() {
        let bytes = model(
            vec![
                node("Relu", &["x"], &["a"], vec![]),
                node("FancyOp", &["a"], &["b"], vec![]),
                node("Loop", &["b"], &["c"], vec![]),
                node("FancyOp", &["c"], &["y"], vec![]),
            ],
            vec![],
            vi("x", &[1, 4]),
            vi("y", &[1, 4]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        match err {
            Error::UnsupportedOperator { ops, backend, .. } => {
                assert_eq!(backend, "burn");
                assert_eq!(ops.as_slice(), ["FancyOp", "Loop"]);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unsupported_attribute_variant_is_reported_at_load() {
        let mode = attr_string("mode", "lanczos");
        let bytes = model(
            vec![node("Resize", &["x", "", "s"], &["y"], vec![mode])],
            vec![build::tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
            vi("x", &[1, 1, 2, 2]),
            vi("y", &[1, 1, 4, 4]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(err.to_string().contains("Resize(mode=lanczos)"), "{err}");
    }

    #[test]
    fn shape_subgraph_on_a_symbolic_batch() {
        // y = Reshape(x, Concat(Slice(Shape(x), 0, 1), [-1])): [n, 2, 3] -> [n, 6]
        let bytes = model(
            vec![
                node("Shape", &["x"], &["s"], vec![]),
                node("Slice", &["s", "st", "en"], &["n"], vec![]),
                node("Concat", &["n", "m1"], &["t"], vec![attr_int("axis", 0)]),
                node("Reshape", &["x", "t"], &["y"], vec![]),
            ],
            vec![i64s("st", &[0]), i64s("en", &[1]), i64s("m1", &[-1])],
            vi("x", &[0, 2, 3]),
            vi("y", &[0, 6]),
        );
        let m = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .unwrap();
        let x = Tensor::from_vec(vec![3, 2, 3], (0..18).map(|i| i as f32).collect()).unwrap();
        let y = m.run(vec![x]).unwrap();
        assert_eq!(y[0].shape(), &[3, 6]);
        assert_eq!(y[0].as_slice::<f32>().unwrap()[7], 7.0);
    }

    #[test]
    fn dangling_input_is_invalid_not_a_panic() {
        let bytes = model(
            vec![node("Relu", &["nowhere"], &["y"], vec![])],
            vec![],
            vi("x", &[1]),
            vi("y", &[1]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
        assert!(err.to_string().contains("nowhere"));
    }

    #[test]
    fn shape_mismatch_inside_the_graph_is_a_run_error() {
        // Add of [1, 3] and a [4] initializer: valid file, impossible broadcast.
        let bytes = model(
            vec![node("Add", &["x", "w"], &["y"], vec![])],
            vec![build::tensor_f32("w", &[4], &[1.0; 4])],
            vi("x", &[1, 3]),
            vi("y", &[1, 3]),
        );
        let m = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .unwrap();
        let err = m
            .run(vec![Tensor::zeros(DType::F32, vec![1, 3]).unwrap()])
            .unwrap_err();
        assert!(matches!(err, Error::Run { .. }), "{err}");
    }
}
