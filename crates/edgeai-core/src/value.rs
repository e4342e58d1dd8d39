//! [`Value`]: a model input or output that is either a host [`Tensor`] or a value a backend
//! keeps in its own form between runs ([`BackendValue`]), for state that goes from one run
//! into the next (an ONNX decoder's KV cache) without a trip through host memory.

use std::any::Any;
use std::fmt;

use crate::{DType, Result, Tensor};

/// A value held in a backend's own form (an ONNX Runtime `OrtValue`, a tract `TValue`...),
/// handed back by [`Model::run_values`](crate::Model::run_values) and taken by the next run
/// as it is.
///
/// Only the backend that made it can use it without a copy; any other backend (or the
/// caller) reads it through [`BackendValue::to_tensor`], which copies.
pub trait BackendValue: Send + Sync + fmt::Debug + Any {
    /// The name of the backend that made the value ([`crate::Backend::name`]).
    fn backend(&self) -> &str;

    /// The element type.
    fn dtype(&self) -> DType;

    /// The shape.
    fn shape(&self) -> &[usize];

    /// A host copy.
    fn to_tensor(&self) -> Result<Tensor>;

    /// The value as [`Any`], for its backend to get its own type back by reference.
    fn as_any(&self) -> &dyn Any;

    /// The value as [`Any`], for its backend to take its own type back by value.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync>;
}

/// An engine's own value with its dtype and shape, as an adapter hands it back from
/// [`Model::run_values`](crate::Model::run_values): the one [`BackendValue`] implementation
/// the adapters share (ONNX Runtime's `DynValue`, tract's `TValue`...). `to_host` is the
/// adapter's copy of `V` into a [`Tensor`].
pub struct Held<V> {
    backend: &'static str,
    value: V,
    dtype: DType,
    shape: Vec<usize>,
    to_host: fn(&V) -> Result<Tensor>,
}

impl<V> Held<V> {
    /// `value` of `backend`, of element type `dtype` and shape `shape`.
    pub fn new(
        backend: &'static str,
        value: V,
        dtype: DType,
        shape: Vec<usize>,
        to_host: fn(&V) -> Result<Tensor>,
    ) -> Self {
        Held {
            backend,
            value,
            dtype,
            shape,
            to_host,
        }
    }

    /// The engine's value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The engine's value, taken out (for the next run).
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> fmt::Debug for Held<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("backend", &self.backend)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> BackendValue for Held<V> {
    fn backend(&self) -> &str {
        self.backend
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn to_tensor(&self) -> Result<Tensor> {
        (self.to_host)(&self.value)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
        self
    }
}

/// A model input or output: a host [`Tensor`] or a [`BackendValue`].
///
/// ```
/// use edgeai_core::{Tensor, Value};
///
/// let v = Value::from(Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap());
/// assert!(v.is_host());
/// assert_eq!(v.shape(), &[2]);
/// assert_eq!(v.into_tensor().unwrap().as_slice::<f32>().unwrap(), &[1.0, 2.0]);
/// ```
#[derive(Debug)]
pub enum Value {
    /// A host tensor.
    Host(Tensor),
    /// A value in a backend's own form.
    Backend(Box<dyn BackendValue>),
}

impl Value {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Value::Host(t) => t.dtype(),
            Value::Backend(v) => v.dtype(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Host(t) => t.shape(),
            Value::Backend(v) => v.shape(),
        }
    }

    /// Elements (the product of the shape).
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the value has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of element data.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }

    /// Whether this is a host tensor.
    pub fn is_host(&self) -> bool {
        matches!(self, Value::Host(_))
    }

    /// The backend holding the value, `None` for a host tensor.
    pub fn backend(&self) -> Option<&str> {
        match self {
            Value::Host(_) => None,
            Value::Backend(v) => Some(v.backend()),
        }
    }

    /// The host tensor: moved out when it is one, else copied from the backend's value.
    pub fn into_tensor(self) -> Result<Tensor> {
        match self {
            Value::Host(t) => Ok(t),
            Value::Backend(v) => v.to_tensor(),
        }
    }

    /// A host copy (or a clone of the host tensor).
    pub fn to_tensor(&self) -> Result<Tensor> {
        match self {
            Value::Host(t) => Ok(t.clone()),
            Value::Backend(v) => v.to_tensor(),
        }
    }

    /// The backend's own value of type `T`, or the value unchanged when it is a host tensor
    /// or another type (for a backend taking its inputs).
    pub fn downcast<T: BackendValue>(self) -> std::result::Result<T, Value> {
        match self {
            Value::Backend(v) if v.as_any().is::<T>() => Ok(*v
                .into_any()
                .downcast::<T>()
                .expect("the type was checked just above")),
            other => Err(other),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::Host(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake {
        shape: Vec<usize>,
    }

    impl BackendValue for Fake {
        fn backend(&self) -> &str {
            "fake"
        }
        fn dtype(&self) -> DType {
            DType::I32
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn to_tensor(&self) -> Result<Tensor> {
            Tensor::from_vec(self.shape.clone(), vec![7i32; self.shape.iter().product()])
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
            self
        }
    }

    #[test]
    fn backend_values_report_and_convert() {
        let v = Value::Backend(Box::new(Fake { shape: vec![2, 3] }));
        assert!(!v.is_host());
        assert_eq!(v.backend(), Some("fake"));
        assert_eq!(
            (v.dtype(), v.shape(), v.len(), v.byte_len()),
            (DType::I32, &[2, 3][..], 6, 24)
        );
        assert_eq!(v.to_tensor().unwrap().as_slice::<i32>().unwrap(), &[7; 6]);
        let back: Fake = v.downcast().unwrap();
        assert_eq!(back.shape, vec![2, 3]);
    }

    #[test]
    fn downcast_to_another_type_gives_the_value_back() {
        #[derive(Debug)]
        struct Other;
        impl BackendValue for Other {
            fn backend(&self) -> &str {
                "other"
            }
            fn dtype(&self) -> DType {
                DType::F32
            }
            fn shape(&self) -> &[usize] {
                &[]
            }
            fn to_tensor(&self) -> Result<Tensor> {
                Ok(Tensor::scalar(0f32))
            }
            fn as_any(&self) -> &dyn Any {
                self
            }
            fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
                self
            }
        }
        let v = Value::Backend(Box::new(Other));
        let v = v.downcast::<Fake>().unwrap_err();
        assert_eq!(v.backend(), Some("other"));
        let h = Value::from(Tensor::scalar(1f32));
        assert!(h.downcast::<Fake>().unwrap_err().is_host());
    }
}
