use std::fmt;

use crate::{DType, Error, Result, Tensor, Value};

/// One dimension of a [`TensorSpec`] shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen at run time (a batch size, an image height...), by name.
    Symbolic(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Name, element type and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name in the model file.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The shape; `None` when the model does not declare its rank.
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// The shape as text, e.g. `[batch, 3, 640, 640]`, or `[?]` for an unknown rank.
    pub fn shape_string(&self) -> String {
        match &self.shape {
            None => "[?]".to_string(),
            Some(dims) => {
                let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }

    /// The fixed dimensions, or `None` if any dimension is symbolic or the rank is unknown.
    pub fn fixed_shape(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Symbolic(_) => None,
            })
            .collect()
    }

    /// Checks a tensor against this spec: dtype, rank, fixed dimensions, and symbolic
    /// dimensions that share a name within this one tensor.
    pub fn check(&self, t: &Tensor) -> Result<()> {
        self.check_parts(t.dtype(), t.shape())
    }

    /// [`TensorSpec::check`] on a dtype and a shape (of a [`Value`], say).
    pub fn check_parts(&self, dtype: DType, shape: &[usize]) -> Result<()> {
        if dtype != self.dtype {
            return Err(Error::InputDType {
                name: self.name.clone(),
                expected: self.dtype,
                got: dtype,
            });
        }
        let Some(dims) = &self.shape else {
            return Ok(());
        };
        let bad = || Error::InputShape {
            name: self.name.clone(),
            expected: self.shape_string(),
            got: shape.to_vec(),
        };
        if dims.len() != shape.len() {
            return Err(bad());
        }
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (d, &n) in dims.iter().zip(shape) {
            match d {
                Dim::Fixed(f) if *f != n => return Err(bad()),
                Dim::Fixed(_) => {}
                Dim::Symbolic(s) => match seen.iter().find(|(k, _)| *k == s.as_str()) {
                    Some((_, v)) if *v != n => return Err(bad()),
                    Some(_) => {}
                    None => seen.push((s.as_str(), n)),
                },
            }
        }
        Ok(())
    }
}

/// Checks `inputs` against `specs` by position: count, dtype and shape.
///
/// Backends call this before running so that every backend reports a wrong input the same
/// way, naming the input and what it expected.
pub fn validate_inputs(specs: &[TensorSpec], inputs: &[Tensor]) -> Result<()> {
    check_count(specs, inputs.len())?;
    specs.iter().zip(inputs).try_for_each(|(s, t)| s.check(t))
}

/// [`validate_inputs`] for [`Value`]s (host tensors or backend values).
pub fn validate_values(specs: &[TensorSpec], inputs: &[Value]) -> Result<()> {
    check_count(specs, inputs.len())?;
    specs
        .iter()
        .zip(inputs)
        .try_for_each(|(s, v)| s.check_parts(v.dtype(), v.shape()))
}

fn check_count(specs: &[TensorSpec], got: usize) -> Result<()> {
    if specs.len() == got {
        Ok(())
    } else {
        Err(Error::InputCount {
            expected: specs.len(),
            got,
            names: names(specs),
        })
    }
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A loaded, runnable model.
///
/// `Send + Sync`: one loaded model can be shared (e.g. in an `Arc`) and run from many
/// threads at once.
pub trait Model: Send + Sync {
    /// The name of the backend that loaded the model.
    fn backend(&self) -> &str;

    /// The model's inputs, in the order [`Model::run`] takes them.
    fn inputs(&self) -> &[TensorSpec];

    /// The model's outputs, in the order [`Model::run`] returns them.
    fn outputs(&self) -> &[TensorSpec];

    /// Runs the model on inputs given by position; returns the outputs by position.
    ///
    /// A wrong input count, dtype or shape is an error naming the input.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;

    /// Runs the model on inputs given by name (any order); returns `(name, tensor)` pairs in
    /// the order of [`Model::outputs`].
    fn run_named(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let specs = self.inputs();
        let mut slots: Vec<Option<Tensor>> = (0..specs.len()).map(|_| None).collect();
        for (name, t) in inputs {
            let i =
                specs
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| Error::UnknownInput {
                        name: name.clone(),
                        known: names(specs),
                    })?;
            if slots[i].replace(t).is_some() {
                return Err(Error::Tensor(format!("input `{name}` given twice")));
            }
        }
        let ordered = slots
            .into_iter()
            .zip(specs)
            .map(|(t, s)| {
                t.ok_or_else(|| Error::MissingInput {
                    name: s.name.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = self.run(ordered)?;
        Ok(self
            .outputs()
            .iter()
            .map(|s| s.name.clone())
            .zip(outs)
            .collect())
    }

    /// Runs the model on [`Value`]s by position: host tensors, or values this backend handed
    /// back from an earlier run, which it takes as they are (no copy).
    ///
    /// `keep_on_backend[i]` asks for output `i` in the backend's own form
    /// ([`Value::Backend`]), to feed a later run without a trip through host memory (an ONNX
    /// decoder's KV cache); an empty slice asks for every output on the host. A backend
    /// without values of its own returns host tensors (check with [`Value::is_host`]); a
    /// value of another backend is copied to the host first.
    ///
    /// The default implementation does exactly that over [`Model::run`]: backends override
    /// it to keep their values (ONNX Runtime and tract do).
    fn run_values(&self, inputs: Vec<Value>, keep_on_backend: &[bool]) -> Result<Vec<Value>> {
        check_keep(self.outputs(), keep_on_backend)?;
        let inputs = inputs
            .into_iter()
            .map(Value::into_tensor)
            .collect::<Result<Vec<_>>>()?;
        Ok(self.run(inputs)?.into_iter().map(Value::Host).collect())
    }
}

/// Checks the `keep_on_backend` argument of [`Model::run_values`]: empty or one flag per
/// output.
pub fn check_keep(outputs: &[TensorSpec], keep_on_backend: &[bool]) -> Result<()> {
    if keep_on_backend.is_empty() || keep_on_backend.len() == outputs.len() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "run_values: {} keep flags for {} outputs ({})",
            keep_on_backend.len(),
            outputs.len(),
            names(outputs)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "input".into(),
            dtype: DType::F32,
            shape: Some(vec![
                Dim::Symbolic("batch".into()),
                Dim::Fixed(3),
                Dim::Symbolic("batch".into()),
            ]),
        }
    }

    #[test]
    fn spec_checks_dtype_rank_and_dims() {
        let s = spec();
        s.check(&Tensor::zeros(DType::F32, vec![2, 3, 2]).unwrap())
            .unwrap();
        let e = s
            .check(&Tensor::zeros(DType::I64, vec![2, 3, 2]).unwrap())
            .unwrap_err();
        assert_eq!(e.to_string(), "input `input`: expected dtype f32, got i64");
        let e = s
            .check(&Tensor::zeros(DType::F32, vec![2, 4, 2]).unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `input`: expected shape [batch, 3, batch], got [2, 4, 2]"
        );
        assert!(s
            .check(&Tensor::zeros(DType::F32, vec![2, 3]).unwrap())
            .is_err());
        assert!(s
            .check(&Tensor::zeros(DType::F32, vec![2, 3, 5]).unwrap())
            .is_err());
    }

    struct Echo(Vec<TensorSpec>);
    impl Model for Echo {
        fn backend(&self) -> &str {
            "echo"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &self.0
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.0
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
            validate_inputs(&self.0, &inputs)?;
            Ok(inputs)
        }
    }

    #[test]
    fn run_named_reorders_and_reports_names() {
        let mut b = spec();
        b.name = "b".into();
        let m = Echo(vec![spec(), b]);
        let x = Tensor::zeros(DType::F32, vec![1, 3, 1]).unwrap();
        let y = Tensor::zeros(DType::F32, vec![2, 3, 2]).unwrap();
        let out = m
            .run_named(vec![("b".into(), y.clone()), ("input".into(), x.clone())])
            .unwrap();
        assert_eq!(out[0], ("input".to_string(), x.clone()));
        assert_eq!(out[1].1, y);
        let e = m.run_named(vec![("nope".into(), x.clone())]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "model has no input named `nope` (inputs: input, b)"
        );
        let e = m.run_named(vec![("b".into(), x.clone())]).unwrap_err();
        assert_eq!(e.to_string(), "missing input `input`");
        let e = m.run(vec![x]).unwrap_err();
        assert_eq!(e.to_string(), "model expects 2 input(s) (input, b), got 1");
    }
}
