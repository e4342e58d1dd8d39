//! [`BurnModel`]: a planned graph on a burn engine, run node by node.

use burn_backend::Backend;
use edgeai_core::{
    guard_run, validate_inputs, DType, LoadOptions, Model, Result, RunPool, Tensor, TensorData,
    TensorSpec,
};

use crate::error::run_error;
use crate::ops::{self, Val};
use crate::parse::{Graph, Host, HostData};
use crate::plan::Plan;
use crate::NAME;

/// A model loaded by the burn backend on engine `B`.
///
/// Weights and folded constants are burn tensors shared (reference-counted) by every run;
/// each run owns its intermediate values, so concurrent runs need no lock.
pub struct BurnModel<B: Backend> {
    plan: Plan<B>,
    device: B::Device,
    pool: RunPool,
}

impl<B: Backend> std::fmt::Debug for BurnModel<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnModel")
            .field("engine", &std::any::type_name::<B>())
            .field("nodes", &self.plan.steps.len())
            .field("inputs", &self.plan.inputs)
            .field("outputs", &self.plan.outputs)
            .finish()
    }
}

/// Plans `graph` on engine `B` and wraps it as a [`Model`].
pub(crate) fn load_on<B: Backend>(
    graph: Graph,
    device: B::Device,
    options: &LoadOptions,
    origin: &str,
) -> Result<Box<dyn Model>> {
    let plan = Plan::<B>::new(graph, &device, options.optimization, origin)?;
    let pool = RunPool::new(NAME, options)?;
    tracing::debug!(
        %origin,
        engine = std::any::type_name::<B>(),
        nodes = plan.steps.len(),
        opset = plan.opset,
        "burn model loaded"
    );
    Ok(Box::new(BurnModel::<B> { plan, device, pool }))
}

impl<B: Backend> BurnModel<B> {
    fn val_of(&self, t: Tensor) -> Result<Val<B>> {
        let (shape, data) = t.into_parts();
        let ints = |v: Vec<i64>| HostData::I64(v);
        let data = match data {
            TensorData::F32(v) => HostData::F32(v),
            TensorData::F16(v) => HostData::F32(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::BF16(v) => HostData::F32(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::I8(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::U8(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::I32(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::I64(v) => ints(v),
            TensorData::Bool(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
            TensorData::I16(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::U16(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::U32(v) => ints(v.iter().map(|&x| x as i64).collect()),
            TensorData::U64(v) => ints(
                v.iter()
                    .map(|&x| {
                        i64::try_from(x).map_err(|_| {
                            run_error(format!(
                                "u64 input value {x} exceeds i64::MAX, the largest integer \
                                 backend `burn` holds"
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            TensorData::F64(_) => {
                return Err(run_error("backend `burn` does not support f64 tensors"));
            }
        };
        Ok(ops::settle::<B>(Host { shape, data }, &self.device))
    }

    fn tensor_of(&self, v: Val<B>, spec: &TensorSpec) -> Result<Tensor> {
        let (shape, data) = match v {
            Val::F(t) => {
                let (shape, v) = ops::download::<B>(t).map_err(run_error)?;
                let data = match spec.dtype {
                    DType::F16 => {
                        TensorData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect())
                    }
                    DType::BF16 => {
                        TensorData::BF16(v.iter().map(|&x| half::bf16::from_f32(x)).collect())
                    }
                    _ => TensorData::F32(v),
                };
                (shape, data)
            }
            Val::I(h) => {
                let v = h.to_i64();
                fn narrow<T: TryFrom<i64>>(v: &[i64], name: &str) -> Result<Vec<T>> {
                    v.iter()
                        .map(|&x| {
                            T::try_from(x).map_err(|_| {
                                run_error(format!(
                                    "output `{name}`: value {x} does not fit its dtype {}",
                                    std::any::type_name::<T>()
                                ))
                            })
                        })
                        .collect()
                }
                let data = match spec.dtype {
                    DType::Bool => TensorData::Bool(v.iter().map(|&x| x != 0).collect()),
                    DType::I16 => TensorData::I16(narrow(&v, &spec.name)?),
                    DType::U16 => TensorData::U16(narrow(&v, &spec.name)?),
                    DType::U32 => TensorData::U32(narrow(&v, &spec.name)?),
                    DType::U64 => TensorData::U64(narrow(&v, &spec.name)?),
                    DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
                    DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
                    DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
                    DType::F32 => TensorData::F32(h.to_f32()),
                    _ => TensorData::I64(v),
                };
                (h.shape.clone(), data)
            }
        };
        Tensor::from_data(shape, data).map_err(run_error)
    }

    fn run_graph(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let plan = &self.plan;
        let mut slots = plan.constants.clone();
        for (&s, t) in plan.input_slots.iter().zip(inputs) {
            slots[s] = Some(self.val_of(t)?);
        }
        for step in &plan.steps {
            let node = &step.node;
            let ins: Vec<Option<Val<B>>> = node
                .inputs
                .iter()
                .zip(&step.take)
                .map(|(s, &take)| {
                    s.and_then(|s| {
                        if take {
                            slots[s].take()
                        } else {
                            slots[s].clone()
                        }
                    })
                })
                .collect();
            let outs = ops::exec::<B>(node, ins, &self.device, plan.opset).map_err(run_error)?;
            if outs.len() < node.outputs.len() {
                return Err(run_error(format!(
                    "{} node `{}` produced {} outputs, the graph expects {}",
                    node.op,
                    node.name,
                    outs.len(),
                    node.outputs.len()
                )));
            }
            for (&s, v) in node.outputs.iter().zip(outs) {
                slots[s] = Some(v);
            }
        }
        plan.output_slots
            .iter()
            .zip(&plan.outputs)
            .map(|(&s, spec)| {
                let v = slots[s]
                    .clone()
                    .ok_or_else(|| run_error(format!("output `{}` was not computed", spec.name)))?;
                self.tensor_of(v, spec)
            })
            .collect()
    }
}

impl<B: Backend> Model for BurnModel<B> {
    fn backend(&self) -> &str {
        NAME
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.plan.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.plan.outputs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        validate_inputs(&self.plan.inputs, &inputs)?;
        guard_run(NAME, || self.pool.install(|| self.run_graph(inputs)))
    }
}
