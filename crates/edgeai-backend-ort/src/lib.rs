//! # edgeai-backend-ort
//!
//! edgeai on [ONNX Runtime](https://onnxruntime.ai) through the `ort` crate.
//!
//! ONNX Runtime is a shared library loaded at run time (ort's `load-dynamic`), so nothing is
//! downloaded at build time. The library is found, in order:
//! 1. the path given to [`OrtBackend::with_library`];
//! 2. `lib/libonnxruntime.so.1.31.1` in the models folder (the one given to
//!    [`OrtBackend::with_models_dir`], else [`edgeai_core::paths::models_dir`]), where
//!    `scripts/fetch-models` puts the library from the pinned PyPI wheel
//!    `onnxruntime==1.31.1` (the version this `ort` release expects).
//!
//! The library reads no environment variable; the `edgeai` CLI passes `ORT_DYLIB_PATH` and
//! `EDGEAI_MODELS` on through these two builders.
//!
//! If none is there, [`Backend::load`] returns [`Error::BackendUnavailable`] saying so.
//!
//! ONNX Runtime sessions are thread-safe, but `ort`'s `Session::run` takes `&mut self`; a
//! loaded [`OrtModel`] therefore keeps a small pool of sessions: a run takes an idle session
//! (or creates one when all are busy) and returns it afterwards. Concurrent runs do not wait
//! on each other; each extra concurrent run costs one more session's memory, at most as many
//! sessions as runs ever overlapped.
//!
//! [`Model::run_values`] keeps the outputs asked for as [`OrtValue`]s (the `OrtValue` ONNX
//! Runtime returned) and takes them back as inputs without a copy: an ONNX decoder's KV cache
//! stays in ONNX Runtime's memory from one token to the next. (Plain [`Model::run`] copies
//! each output into a host tensor; host tensors go in without a copy.)
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use edgeai_core::{
    check_keep, validate_inputs, validate_values, Backend, DType, Dim, Error, Held, LoadOptions,
    Model, ModelFormat, ModelSource, OptLevel, Result, Tensor, TensorData, TensorSpec, Value,
};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};

const NAME: &str = "ort";
/// The ONNX Runtime release this build of `ort` expects.
pub const ORT_VERSION: &str = "1.31.1";
/// The library's file name as fetched by `scripts/fetch-models` (Linux).
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

static INIT: OnceLock<(PathBuf, Environment)> = OnceLock::new();
/// Serialises initialisation attempts; a failed attempt is not cached, so a later call with
/// another path (or after `scripts/fetch-models`) can still succeed.
static INIT_LOCK: Mutex<()> = Mutex::new(());

fn unavailable(reason: impl Into<String>) -> Error {
    Error::BackendUnavailable {
        backend: NAME.into(),
        reason: reason.into(),
    }
}

/// Finds the ONNX Runtime library and creates the process's one ONNX Runtime environment.
fn init(
    library: Option<&Path>,
    models_dir: Option<&Path>,
) -> Result<(&'static Path, &'static Environment)> {
    if let Some((p, env)) = INIT.get() {
        return Ok((p.as_path(), env));
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, env)) = INIT.get() {
        return Ok((p.as_path(), env));
    }
    let models = models_dir
        .map(Path::to_path_buf)
        .or_else(|| edgeai_core::paths::models_dir(None));
    let candidates: Vec<PathBuf> = library
        .map(Path::to_path_buf)
        .into_iter()
        .chain(models.map(|d| d.join("lib").join(ORT_LIBRARY)))
        .collect();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(unavailable(format!(
            "ONNX Runtime {ORT_VERSION} library not found (looked at: {}); run `scripts/fetch-models --only ort` \
             or give its path (OrtBackend::with_library; the edgeai CLI reads ORT_DYLIB_PATH)",
            if candidates.is_empty() {
                "nothing: no models folder and no library path given".to_string()
            } else {
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            }
        )));
    };
    let builder = ort::init_from(path)
        .map_err(|e| unavailable(format!("cannot load {}: {e}", path.display())))?;
    let env = builder
        .with_name("edgeai")
        .build()
        .map_err(|e| unavailable(format!("cannot create the environment: {e}")))?;
    tracing::info!(library = %path.display(), "ONNX Runtime initialised");
    let (p, env) = INIT.get_or_init(|| (path.clone(), env));
    Ok((p.as_path(), env))
}

/// The ONNX Runtime backend.
#[derive(Debug, Default, Clone)]
pub struct OrtBackend {
    library: Option<PathBuf>,
    models_dir: Option<PathBuf>,
}

impl OrtBackend {
    /// The backend, finding the library as described in the crate docs.
    pub fn new() -> Self {
        OrtBackend::default()
    }

    /// The backend with an explicit library path. The library is loaded once per process: the
    /// first successful initialisation wins.
    pub fn with_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.library = Some(path.into());
        self
    }

    /// The backend looking for `lib/libonnxruntime.so.1.31.1` in this models folder instead
    /// of the one [`edgeai_core::paths::models_dir`] finds.
    pub fn with_models_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.models_dir = Some(dir.into());
        self
    }

    /// Loads the library now (instead of at the first `load`) and returns its path.
    pub fn library(&self) -> Result<&'static Path> {
        self.init().map(|(p, _)| p)
    }

    fn init(&self) -> Result<(&'static Path, &'static Environment)> {
        init(self.library.as_deref(), self.models_dir.as_deref())
    }
}

struct Config {
    threads: Option<usize>,
    level: GraphOptimizationLevel,
}

fn build_session(
    env: &Environment,
    bytes: &[u8],
    cfg: &Config,
) -> std::result::Result<Session, ort::Error> {
    let mut b = Session::builder(env)?.with_optimization_level(cfg.level)?;
    if let Some(n) = cfg.threads {
        b = b.with_intra_threads(n)?.with_inter_threads(1)?;
    }
    b.commit_from_memory(bytes)
}

/// Turns ONNX Runtime's load error into the edgeai error that names the problem.
fn load_error(origin: &str, e: &ort::Error) -> Error {
    let msg = e.to_string();
    // ONNX Runtime words it several ways, depending on where the op is missed:
    //   "No Op registered for Foo with domain_version of 13"
    //   "Fatal error: Foo is not a registered function/op"
    //   "Could not find an implementation for Foo(13) node with name '...'"
    const PATTERNS: [(&str, &str); 3] = [
        ("No Op registered for ", " with domain_version"),
        ("Fatal error: ", " is not a registered function/op"),
        ("Could not find an implementation for ", "("),
    ];
    let op = PATTERNS.iter().find_map(|(before, after)| {
        let rest = msg.split_once(before)?.1;
        let (op, _) = rest.split_once(after)?;
        Some(op.trim()).filter(|op| !op.is_empty() && !op.contains(char::is_whitespace))
    });
    match op {
        Some(op) => Error::UnsupportedOperator {
            backend: NAME.into(),
            origin: origin.to_string(),
            ops: vec![op.trim().to_string()],
        },
        None => Error::InvalidModel {
            origin: origin.to_string(),
            reason: msg,
        },
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        let origin = source.origin();
        self.check_format(&source)?;
        let (_, env) = self.init()?;
        let bytes = source.into_bytes()?;
        let cfg = Config {
            threads: options.threads,
            level: match options.optimization {
                OptLevel::None => GraphOptimizationLevel::Disable,
                OptLevel::Basic => GraphOptimizationLevel::Level1,
                OptLevel::All => GraphOptimizationLevel::All,
            },
        };
        let session = build_session(env, &bytes, &cfg).map_err(|e| load_error(&origin, &e))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<Vec<_>>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(%origin, inputs = inputs.len(), outputs = outputs.len(), "ort model loaded");
        Ok(Box::new(OrtModel {
            env,
            bytes,
            cfg,
            pool: Mutex::new(vec![session]),
            inputs,
            outputs,
        }))
    }
}

fn spec(name: &str, ty: &ValueType) -> Result<TensorSpec> {
    let bad = |what: String| Error::InvalidModel {
        origin: name.to_string(),
        reason: what,
    };
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = ty
    else {
        return Err(bad(format!(
            "`{name}` is not a tensor ({ty:?}); edgeai supports tensor inputs and outputs"
        )));
    };
    let dtype = dtype_of(*ty).ok_or_else(|| {
        bad(format!(
            "`{name}` has element type {ty:?}, not supported by edgeai"
        ))
    })?;
    let dims = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d >= 0 {
                Dim::Fixed(d as usize)
            } else {
                let s = dimension_symbols.get(i).cloned().unwrap_or_default();
                // ORT names every unnamed dimension "?": those are independent sizes, not one
                // shared symbol (validate_inputs makes equal names take equal sizes).
                Dim::Symbolic(if s.is_empty() || s == "?" {
                    format!("{name}_dim{i}")
                } else {
                    s
                })
            }
        })
        .collect();
    Ok(TensorSpec {
        name: name.to_string(),
        dtype,
        shape: Some(dims),
    })
}

fn dtype_of(t: TensorElementType) -> Option<DType> {
    Some(match t {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Bfloat16 => DType::BF16,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Bool => DType::Bool,
        TensorElementType::Float64 => DType::F64,
        TensorElementType::Int16 => DType::I16,
        TensorElementType::Uint16 => DType::U16,
        TensorElementType::Uint32 => DType::U32,
        TensorElementType::Uint64 => DType::U64,
        _ => return None,
    })
}

/// A model loaded by ONNX Runtime (see the crate docs for how sessions are pooled).
pub struct OrtModel {
    env: &'static Environment,
    bytes: Vec<u8>,
    cfg: Config,
    pool: Mutex<Vec<Session>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn run_err(e: impl std::fmt::Display) -> Error {
    Error::Run {
        backend: NAME.into(),
        reason: e.to_string(),
    }
}

fn to_value(t: Tensor) -> Result<DynValue> {
    let (shape, data) = t.into_parts();
    let v = match data {
        TensorData::F32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::F16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::BF16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I8(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U8(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Bool(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::F64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
    };
    v.map_err(run_err)
}

fn from_value(v: &DynValue) -> Result<Tensor> {
    fn take<T: ort::value::PrimitiveTensorElementType + edgeai_core::Element>(
        v: &DynValue,
    ) -> Result<Tensor> {
        let (shape, data) = v.try_extract_tensor::<T>().map_err(run_err)?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        Tensor::from_vec(shape, data.to_vec())
    }
    match v.dtype() {
        ValueType::Tensor { ty, .. } => match ty {
            TensorElementType::Float32 => take::<f32>(v),
            TensorElementType::Float16 => take::<half::f16>(v),
            TensorElementType::Bfloat16 => take::<half::bf16>(v),
            TensorElementType::Int8 => take::<i8>(v),
            TensorElementType::Uint8 => take::<u8>(v),
            TensorElementType::Int32 => take::<i32>(v),
            TensorElementType::Int64 => take::<i64>(v),
            TensorElementType::Bool => take::<bool>(v),
            TensorElementType::Float64 => take::<f64>(v),
            TensorElementType::Int16 => take::<i16>(v),
            TensorElementType::Uint16 => take::<u16>(v),
            TensorElementType::Uint32 => take::<u32>(v),
            TensorElementType::Uint64 => take::<u64>(v),
            other => Err(run_err(format!(
                "output element type {other:?} is not supported by edgeai"
            ))),
        },
        other => Err(run_err(format!("output {other:?} is not a tensor"))),
    }
}

/// An ONNX Runtime value kept between runs ([`Model::run_values`]): the `OrtValue` an
/// output came back as, fed to the next run as it is.
pub type OrtValue = Held<DynValue>;

fn ort_value(value: DynValue) -> Result<OrtValue> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(run_err(format!(
            "output {:?} is not a tensor",
            value.dtype()
        )));
    };
    let dtype = dtype_of(*ty).ok_or_else(|| {
        run_err(format!(
            "output element type {ty:?} is not supported by edgeai"
        ))
    })?;
    let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
    Ok(Held::new(NAME, value, dtype, shape, from_value))
}

impl OrtModel {
    fn checkout(&self) -> Result<Session> {
        let idle = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(s) => Ok(s),
            None => {
                tracing::debug!("all ort sessions busy: creating another");
                build_session(self.env, &self.bytes, &self.cfg).map_err(run_err)
            }
        }
    }
}

impl Model for OrtModel {
    fn backend(&self) -> &str {
        NAME
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        validate_inputs(&self.inputs, &inputs)?;
        let values: Vec<(String, DynValue)> = self
            .inputs
            .iter()
            .zip(inputs)
            .map(|(s, t)| Ok((s.name.clone(), to_value(t)?)))
            .collect::<Result<_>>()?;
        let mut session = self.checkout()?;
        let result = (|| {
            let outs = session.run(values).map_err(run_err)?;
            self.outputs
                .iter()
                .map(|s| from_value(&outs[s.name.as_str()]))
                .collect::<Result<Vec<_>>>()
        })();
        self.checkin(session);
        result
    }

    fn run_values(&self, inputs: Vec<Value>, keep_on_backend: &[bool]) -> Result<Vec<Value>> {
        validate_values(&self.inputs, &inputs)?;
        check_keep(&self.outputs, keep_on_backend)?;
        let values: Vec<(String, DynValue)> = self
            .inputs
            .iter()
            .zip(inputs)
            .map(|(s, v)| {
                let value = match v.downcast::<OrtValue>() {
                    Ok(own) => own.into_value(),
                    Err(other) => to_value(other.into_tensor()?)?,
                };
                Ok((s.name.clone(), value))
            })
            .collect::<Result<_>>()?;
        let mut session = self.checkout()?;
        let result = (|| {
            let mut outs = session.run(values).map_err(run_err)?;
            self.outputs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if keep_on_backend.get(i).copied().unwrap_or(false) {
                        let v = outs
                            .remove(s.name.as_str())
                            .ok_or_else(|| run_err(format!("no output `{}`", s.name)))?;
                        Ok(Value::Backend(Box::new(ort_value(v)?)))
                    } else {
                        let v = outs
                            .get(s.name.as_str())
                            .ok_or_else(|| run_err(format!("no output `{}`", s.name)))?;
                        from_value(v).map(Value::Host)
                    }
                })
                .collect::<Result<Vec<_>>>()
        })();
        self.checkin(session);
        result
    }
}

impl OrtModel {
    fn checkin(&self, session: Session) {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
    }
}
