//! # edgeai-backend-tract
//!
//! The default edgeai backend: [tract](https://crates.io/crates/tract-onnx), a pure-Rust
//! inference engine. It loads ONNX models from a path or bytes, optimises them, and runs them
//! behind edgeai-core's [`Backend`] / [`Model`] traits. TensorFlow Lite flatbuffers (`.tflite`,
//! e.g. MediaPipe's BlazeFace) load through tract-tflite the same way.
//!
//! - Symbolic dimensions (a batch size, an image size) are specialised per run: tract
//!   optimises symbolic dimensions badly (YuNet with a symbolic image size runs about 4x
//!   slower than with a fixed one), so a run whose input shapes fill symbolic dimensions
//!   builds, once, a plan optimised for those concrete shapes and caches it. The cache holds
//!   the [`LoadOptions::shape_plans`] most recently used plans (default 4; `0` disables),
//!   keyed by the input shapes. A shape whose specialised build or run fails falls back to
//!   the generic symbolic plan, which is also what every run uses once the model has given
//!   up specialising: when a new shape arrives while the cache is full and none of its plans
//!   has been used twice (an LLM decoder whose sequence length changes every step). Models
//!   whose inputs are all fixed, and [`OptLevel::None`], use one plan as before.
//!   [`TractModel::shape_plans`] reports what the cache did.
//! - [`LoadOptions::threads`] sets the size of a thread pool owned by the loaded model
//!   (tract's matrix-multiply executor); `None` or `1` runs single-threaded.
//! - An operator tract lacks, a truncated or corrupt file, or bytes that are not ONNX give an
//!   [`Error`] that names the operator or the problem.
//! - [`Model::run_values`] keeps the outputs asked for as [`TractValue`]s (tract's
//!   reference-counted tensors) and takes them back as inputs without a copy: an ONNX
//!   decoder's KV cache goes from one run into the next as it is. (Plain [`Model::run`]
//!   copies each input into a tract tensor and each output back out.)
//!
//! ```no_run
//! use edgeai_backend_tract::TractBackend;
//! use edgeai_core::{Backend, DType, LoadOptions, Tensor};
//!
//! let model = TractBackend::new().load("models/face/sface.onnx".into(), &LoadOptions::new())?;
//! let out = model.run(vec![Tensor::zeros(DType::F32, vec![1, 3, 112, 112])?])?;
//! assert_eq!(out[0].shape(), &[1, 128]);
//! # Ok::<(), edgeai_core::Error>(())
//! ```
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use edgeai_core::{
    check_keep, guard_load, guard_run, validate_inputs, validate_values, Backend, DType, Dim,
    Error, Held, LoadOptions, Model, ModelFormat, ModelSource, OptLevel, Result, Tensor,
    TensorData, TensorSpec, Value,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;

const NAME: &str = "tract";

/// The tract backend. Cheap to create; holds no state.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl TractBackend {
    /// Creates the backend.
    pub fn new() -> Self {
        TractBackend
    }

    /// [`Backend::load`] returning the concrete [`TractModel`] (for
    /// [`TractModel::shape_plans`]).
    pub fn load_model(&self, source: ModelSource, options: &LoadOptions) -> Result<TractModel> {
        let origin = source.origin();
        let format = self.check_format(&source)?;
        let bytes = source.into_bytes()?;
        // tract panics on some malformed graphs (e.g. a graph output that no node produces:
        // found by fuzz/, target onnx_tract); a bad file must be an error, not a panic.
        // Nothing outlives a panicking load, so no broken state can be observed.
        guard_load(NAME, &origin, || {
            load_bytes(format, &bytes, &origin, options)
        })
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx, ModelFormat::Tflite]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        Ok(Box::new(self.load_model(source, options)?))
    }
}

fn load_bytes(
    format: ModelFormat,
    bytes: &[u8],
    origin: &str,
    options: &LoadOptions,
) -> Result<TractModel> {
    {
        let origin = origin.to_string();
        let typed = match format {
            ModelFormat::Tflite => load_tflite(bytes, &origin)?,
            _ => load_onnx(bytes, &origin)?,
        };
        let invalid = |reason: String| Error::InvalidModel {
            origin: origin.clone(),
            reason,
        };
        let threads = options.threads.unwrap_or(1);
        let run_options = RunOptions {
            executor: (threads > 1).then(|| multithread::Executor::multithread(threads)),
            ..Default::default()
        };
        // The symbols a run can bind: only plain-symbol input dims (`N`, not `N+1`).
        let input_symbols = input_symbols(&typed).map_err(|e| invalid(chain(&e)))?;
        let specialise = options.shape_plans > 0
            && options.optimization != OptLevel::None
            && input_symbols.iter().flatten().any(Option::is_some);
        let (typed, specializer) = if specialise {
            // Keep the decluttered graph: each concrete shape binds its symbols in a clone
            // (constants are shared `Arc`s) and optimises that.
            let decluttered = typed.into_decluttered().map_err(|e| invalid(chain(&e)))?;
            let typed = match options.optimization {
                OptLevel::All => decluttered
                    .clone()
                    .into_optimized()
                    .map_err(|e| invalid(chain(&e)))?,
                _ => decluttered.clone(),
            };
            let specializer = Specializer {
                capacity: options.shape_plans,
                optimization: options.optimization,
                run_options: run_options.clone(),
                input_symbols,
                fallbacks: AtomicU64::new(0),
                cache: Mutex::new(Cache {
                    source: Some(Arc::new(decluttered)),
                    ..Cache::default()
                }),
            };
            (typed, Some(specializer))
        } else {
            let typed = match options.optimization {
                OptLevel::None => typed,
                OptLevel::Basic => typed.into_decluttered().map_err(|e| invalid(chain(&e)))?,
                OptLevel::All => typed.into_optimized().map_err(|e| invalid(chain(&e)))?,
            };
            (typed, None)
        };
        let inputs = specs(
            &typed,
            typed.input_outlets().map_err(|e| invalid(chain(&e)))?,
        )?;
        let outputs = specs(
            &typed,
            typed.output_outlets().map_err(|e| invalid(chain(&e)))?,
        )?;
        let plan = typed
            .into_runnable_with_options(&run_options)
            .map_err(|e| invalid(chain(&e)))?;
        tracing::debug!(
            %origin,
            threads,
            inputs = inputs.len(),
            outputs = outputs.len(),
            shape_plans = specializer.as_ref().map_or(0, |s| s.capacity),
            "tract model loaded"
        );
        Ok(TractModel {
            plan,
            specializer,
            inputs,
            outputs,
        })
    }
}

/// For each input, for each dimension, the symbol it is if it is a plain symbol.
fn input_symbols(model: &TypedModel) -> TractResult<Vec<Vec<Option<Symbol>>>> {
    model
        .input_outlets()?
        .iter()
        .map(|o| {
            Ok(model
                .outlet_fact(*o)?
                .shape
                .iter()
                .map(|d| match d {
                    TDim::Sym(s) => Some(s.clone()),
                    _ => None,
                })
                .collect())
        })
        .collect()
}

/// An optimised, runnable tract plan.
type Plan = Arc<TypedRunnableModel>;

/// A cache slot: filled once by the first run that needs it (others wait on the
/// `OnceLock` rather than building the same plan again); `None` when the specialised build
/// failed, so the shape keeps using the generic plan without retrying.
type Slot = Arc<OnceLock<Option<Plan>>>;

/// Builds and caches plans optimised for concrete input shapes (see the crate docs).
struct Specializer {
    /// Most plans kept ([`LoadOptions::shape_plans`], at least 1).
    capacity: usize,
    optimization: OptLevel,
    run_options: RunOptions,
    /// [`input_symbols`] of the source graph.
    input_symbols: Vec<Vec<Option<Symbol>>>,
    /// Runs that used the generic plan because the specialised build or run failed.
    fallbacks: AtomicU64,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// The decluttered graph plans are derived from; `None` once the model gave up
    /// specialising (freeing it).
    source: Option<Arc<TypedModel>>,
    entries: Vec<Entry>,
    /// Ticks once per lookup; orders entries for least-recently-used eviction.
    clock: u64,
    built: u64,
    hits: u64,
}

struct Entry {
    key: Vec<Vec<usize>>,
    slot: Slot,
    last_used: u64,
    uses: u64,
}

impl Specializer {
    /// The plan for these input shapes: the cached one, or a new one built now; `None` to
    /// run the generic plan (a failed build, or specialisation given up).
    fn plan_for(&self, shapes: Vec<Vec<usize>>) -> Option<Plan> {
        let (slot, source) = {
            // A panic while holding the lock cannot leave the cache inconsistent (every
            // update is a single push/remove/increment), so a poisoned lock is still usable.
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let source = cache.source.clone()?;
            cache.clock += 1;
            let now = cache.clock;
            if let Some(i) = cache.entries.iter().position(|e| e.key == shapes) {
                cache.hits += 1;
                let e = &mut cache.entries[i];
                e.uses += 1;
                e.last_used = now;
                (e.slot.clone(), source)
            } else {
                if cache.entries.len() >= self.capacity {
                    if cache.entries.iter().all(|e| e.uses == 1) {
                        // Full of one-use plans: a new shape every run. Stop paying for an
                        // optimisation per shape, for good.
                        tracing::debug!(
                            plans = cache.entries.len(),
                            "tract: every cached shape plan was used once; using the generic plan from now on"
                        );
                        cache.source = None;
                        cache.entries.clear();
                        return None;
                    }
                    let lru = (0..cache.entries.len())
                        .min_by_key(|&i| cache.entries[i].last_used)
                        .unwrap_or(0);
                    cache.entries.remove(lru);
                }
                cache.built += 1;
                let slot = Slot::default();
                cache.entries.push(Entry {
                    key: shapes.clone(),
                    slot: slot.clone(),
                    last_used: now,
                    uses: 1,
                });
                (slot, source)
            }
        };
        slot.get_or_init(|| {
            let built = guard_run(NAME, || {
                self.build(&source, &shapes).map_err(|e| Error::Run {
                    backend: NAME.into(),
                    reason: chain(&e),
                })
            });
            match built {
                Ok(plan) => {
                    tracing::debug!(?shapes, "tract: built a plan for these input shapes");
                    Some(plan)
                }
                Err(e) => {
                    tracing::debug!(?shapes, error = %e, "tract: no specialised plan for these input shapes; using the generic plan");
                    None
                }
            }
        })
        .clone()
        .or_else(|| {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            None
        })
    }

    /// Binds the input symbols to `shapes` in a copy of the source graph and optimises it.
    fn build(&self, source: &TypedModel, shapes: &[Vec<usize>]) -> TractResult<Plan> {
        let mut subs: HashMap<Symbol, TDim> = HashMap::new();
        for (dims, shape) in self.input_symbols.iter().zip(shapes) {
            for (sym, &n) in dims.iter().zip(shape) {
                if let Some(sym) = sym {
                    let n = TDim::Val(n as i64);
                    if let Some(prev) = subs.insert(sym.clone(), n.clone()) {
                        if prev != n {
                            return Err(TractError::msg(format!(
                                "symbol {sym} is both {prev} and {n} in these inputs"
                            )));
                        }
                    }
                }
            }
        }
        let model = source.set_symbols(&subs)?;
        let model = match self.optimization {
            OptLevel::All => model.into_optimized()?,
            _ => model.into_decluttered()?,
        };
        model.into_runnable_with_options(&self.run_options)
    }

    fn stats(&self) -> ShapePlanStats {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        ShapePlanStats {
            cached: cache.entries.len(),
            built: cache.built,
            hits: cache.hits,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            specializing: cache.source.is_some(),
        }
    }
}

/// What a [`TractModel`]'s shape-specialised plan cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShapePlanStats {
    /// Plans cached now (at most [`LoadOptions::shape_plans`]).
    pub cached: usize,
    /// Specialised plans built (cache misses), failed builds included.
    pub built: u64,
    /// Runs that found their shapes' plan in the cache.
    pub hits: u64,
    /// Runs that used the generic plan because the specialised build or run failed.
    pub fallbacks: u64,
    /// Whether new shapes still get specialised plans: `false` for a model whose inputs are
    /// all fixed, with specialisation off, or once it gave up on ever-new shapes.
    pub specializing: bool,
}

/// Parses ONNX bytes into a typed model, listing every operator tract lacks.
fn load_onnx(bytes: &[u8], origin: &str) -> Result<TypedModel> {
    let invalid = |reason: String| Error::InvalidModel {
        origin: origin.to_string(),
        reason,
    };
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| invalid(chain(&e)))?;
    if proto.graph.is_none() {
        return Err(invalid("not an ONNX model: no graph".into()));
    }
    let inference = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| invalid(chain(&e)))?;
    let mut missing: Vec<String> = inference
        .nodes()
        .iter()
        .filter(|n| n.op_is::<UnimplementedOp>())
        .map(|n| {
            let name = n.op().name();
            name.strip_prefix("Unimplemented(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or(&name)
                .to_string()
        })
        .collect();
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(Error::UnsupportedOperator {
            backend: NAME.into(),
            origin: origin.to_string(),
            ops: missing,
        });
    }
    inference.into_typed().map_err(|e| invalid(chain(&e)))
}

/// Parses a TensorFlow Lite flatbuffer into a typed model (tract-tflite).
///
/// tract-tflite stops at the first operator it lacks with a debug dump of the operator code;
/// that becomes [`Error::UnsupportedOperator`] naming the builtin or custom operator.
fn load_tflite(bytes: &[u8], origin: &str) -> Result<TypedModel> {
    if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
        return Err(Error::InvalidModel {
            origin: origin.to_string(),
            reason: "not a TensorFlow Lite flatbuffer (no `TFL3` identifier)".into(),
        });
    }
    // tract-tflite 0.23 unwraps some flatbuffer fields while walking the graph: `load` runs
    // this under the same catch_unwind as ONNX loading, so such a panic is an error too.
    let parsed = tract_tflite::tflite().model_for_read(&mut &bytes[..]);
    parsed.map_err(|e| {
        let msg = chain(&e);
        match unsupported_tflite_op(&msg) {
            Some(op) => Error::UnsupportedOperator {
                backend: NAME.into(),
                origin: origin.to_string(),
                ops: vec![op],
            },
            None => Error::InvalidModel {
                origin: origin.to_string(),
                reason: msg,
            },
        }
    })
}

/// The operator named in tract-tflite's "Unsupported: OperatorCode { deprecated_builtin_code:
/// 6, custom_code: None, .. builtin_code: DEQUANTIZE .. }" (numbers mapped to their names).
fn unsupported_tflite_op(msg: &str) -> Option<String> {
    let rest = &msg[msg.find("Unsupported:")?..];
    if let Some(i) = rest.find("custom_code: Some(\"") {
        let name: String = rest[i + 19..].chars().take_while(|c| *c != '"').collect();
        if !name.is_empty() {
            return Some(name);
        }
    }
    // As tract-tflite itself decides: the deprecated 8-bit code unless it is the placeholder
    // (127) that points to the 32-bit `builtin_code` field.
    let token_after = |key: &str| -> Option<String> {
        let i = rest.find(key)? + key.len();
        let t: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!t.is_empty()).then_some(t)
    };
    let name_of = |token: String| match token.parse::<i32>() {
        Ok(n) => tract_tflite::tflite::BuiltinOperator(n)
            .variant_name()
            .map(str::to_string)
            .unwrap_or(token),
        Err(_) => token,
    };
    match token_after("deprecated_builtin_code: ") {
        Some(t) if t != "127" => Some(name_of(t)),
        _ => token_after("\n    builtin_code: ")
            .or_else(|| token_after(" builtin_code: "))
            .map(name_of),
    }
}

/// A model loaded by tract: an optimised, immutable plan shared by every run, and for a
/// model with symbolic input dimensions a bounded cache of plans specialised to concrete
/// input shapes (see the crate docs).
///
/// Each [`Model::run`] creates its own execution state, so concurrent runs from many threads
/// do not serialise on a lock; the cache's lock is held only to look a plan up, and a plan
/// is built outside it (runs that need the same new plan wait for the one build).
pub struct TractModel {
    plan: Plan,
    specializer: Option<Specializer>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl TractModel {
    /// What the shape-specialised plan cache has done so far.
    pub fn shape_plans(&self) -> ShapePlanStats {
        self.specializer
            .as_ref()
            .map(Specializer::stats)
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Model for TractModel {
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
        let shapes = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let values = inputs
            .into_iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<TVec<_>>>()?;
        self.run_tract(shapes, values)?
            .into_iter()
            .map(|v| from_tract(&v))
            .collect()
    }

    fn run_values(&self, inputs: Vec<Value>, keep_on_backend: &[bool]) -> Result<Vec<Value>> {
        validate_values(&self.inputs, &inputs)?;
        check_keep(&self.outputs, keep_on_backend)?;
        let shapes = inputs.iter().map(|v| v.shape().to_vec()).collect();
        let values = inputs
            .into_iter()
            .map(|v| match v.downcast::<TractValue>() {
                Ok(own) => Ok(own.into_value()),
                Err(other) => to_tract(other.into_tensor()?).map(TValue::from),
            })
            .collect::<Result<TVec<_>>>()?;
        self.run_tract(shapes, values)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                if keep_on_backend.get(i).copied().unwrap_or(false) {
                    tract_value(v).map(|v| Value::Backend(Box::new(v)))
                } else {
                    from_tract(&v).map(Value::Host)
                }
            })
            .collect()
    }
}

impl TractModel {
    /// Runs the specialised plan for these input shapes where there is one, else the generic
    /// plan.
    fn run_tract(&self, shapes: Vec<Vec<usize>>, values: TVec<TValue>) -> Result<TVec<TValue>> {
        let special = self.specializer.as_ref().and_then(|s| s.plan_for(shapes));
        let generic = |values: TVec<TValue>| {
            self.plan.run(values).map_err(|e| Error::Run {
                backend: NAME.into(),
                reason: chain(&e),
            })
        };
        // Plans are immutable and each run builds its own state, so a panicking run
        // leaves nothing behind; report it as a failed run rather than unwinding into the
        // caller.
        guard_run(NAME, || {
            match special {
            None => generic(values),
            // A specialised plan that fails falls back to the generic one; the values are
            // reference-counted, so keeping them for that costs no copy.
            Some(plan) => plan.run(values.clone()).or_else(|e| {
                tracing::debug!(error = %chain(&e), "tract: specialised plan failed; rerunning the generic plan");
                if let Some(s) = &self.specializer {
                    s.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                generic(values)
            }),
        }
        })
    }
}

/// A tract value kept between runs ([`Model::run_values`]): the reference-counted tensor an
/// output came back as, fed to the next run as it is.
pub type TractValue = Held<TValue>;

fn tract_value(value: TValue) -> Result<TractValue> {
    let dtype = dtype_of(value.datum_type()).ok_or_else(|| Error::Run {
        backend: NAME.into(),
        reason: format!(
            "output dtype {:?} is not supported by edgeai",
            value.datum_type()
        ),
    })?;
    let shape = value.shape().to_vec();
    Ok(Held::new(NAME, value, dtype, shape, |v| from_tract(v)))
}

/// The whole anyhow context chain in one line: tract's outer message alone ("Translating
/// node #3") rarely says what is wrong.
fn chain(e: &TractError) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn dtype_of(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::F32 => DType::F32,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::U8 => DType::U8,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::Bool => DType::Bool,
        DatumType::F64 => DType::F64,
        DatumType::I16 => DType::I16,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        _ => return None,
    })
}

fn specs(model: &TypedModel, outlets: &[OutletId]) -> Result<Vec<TensorSpec>> {
    outlets
        .iter()
        .map(|o| {
            let node = model.node(o.node);
            // Optimisation renames nodes; the ONNX input/output name survives as the label.
            let name = model.outlet_label(*o).unwrap_or(&node.name).to_string();
            let fact = model.outlet_fact(*o).map_err(|e| Error::InvalidModel {
                origin: name.clone(),
                reason: chain(&e),
            })?;
            let dtype = dtype_of(fact.datum_type).ok_or_else(|| Error::InvalidModel {
                origin: name.clone(),
                reason: format!(
                    "tensor `{name}` has dtype {:?}, which edgeai does not support",
                    fact.datum_type
                ),
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| match d.as_i64() {
                    Some(n) => Dim::Fixed(n as usize),
                    None => Dim::Symbolic(d.to_string()),
                })
                .collect();
            Ok(TensorSpec {
                name,
                dtype,
                shape: Some(shape),
            })
        })
        .collect()
}

fn to_tract(t: Tensor) -> Result<tract_onnx::prelude::Tensor> {
    let (shape, data) = t.into_parts();
    let err = |e: TractError| Error::Tensor(chain(&e));
    Ok(match data {
        TensorData::F32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::F16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::BF16(v) => {
            let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            tract_onnx::prelude::Tensor::from_shape(&shape, &f).map_err(err)?
        }
        TensorData::I8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::Bool(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::F64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
    })
}

fn plain<T: Datum>(t: &tract_onnx::prelude::Tensor) -> Result<&[T]> {
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<T>())
        .map_err(|e| Error::Tensor(chain(&e)))
}

fn from_tract(t: &tract_onnx::prelude::Tensor) -> Result<Tensor> {
    let shape = t.shape().to_vec();
    let data = match t.datum_type() {
        DatumType::F32 => TensorData::F32(plain::<f32>(t)?.to_vec()),
        DatumType::F16 => TensorData::F16(plain::<f16>(t)?.to_vec()),
        DatumType::I8 => TensorData::I8(plain::<i8>(t)?.to_vec()),
        DatumType::U8 => TensorData::U8(plain::<u8>(t)?.to_vec()),
        DatumType::I32 => TensorData::I32(plain::<i32>(t)?.to_vec()),
        DatumType::I64 => TensorData::I64(plain::<i64>(t)?.to_vec()),
        DatumType::Bool => TensorData::Bool(plain::<bool>(t)?.to_vec()),
        DatumType::F64 => TensorData::F64(plain::<f64>(t)?.to_vec()),
        DatumType::I16 => TensorData::I16(plain::<i16>(t)?.to_vec()),
        DatumType::U16 => TensorData::U16(plain::<u16>(t)?.to_vec()),
        DatumType::U32 => TensorData::U32(plain::<u32>(t)?.to_vec()),
        DatumType::U64 => TensorData::U64(plain::<u64>(t)?.to_vec()),
        other => {
            return Err(Error::Run {
                backend: NAME.into(),
                reason: format!("output dtype {other:?} is not supported by edgeai"),
            })
        }
    };
    Tensor::from_data(shape, data)
}
