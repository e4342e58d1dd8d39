use std::fmt;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

use crate::{Error, Result};

/// Element type of a [`Tensor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Boolean, one byte per element (ONNX `BOOL`, NumPy `|b1`).
    Bool,
    /// 64-bit float.
    F64,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 13] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::F64,
        DType::I16,
        DType::U16,
        DType::U32,
        DType::U64,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// True for the floating-point types (f16, bf16, f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Parses a name as [`DType::name`] writes it (`f32`, `bool`, `u64`...).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Lower-case name as used in error messages and the CLI (`f32`, `i64`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::F64 => "f64",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Owned, contiguous (row-major) storage of a [`Tensor`], one variant per [`DType`].
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    F64(Vec<f64>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

/// Runs `$body` with `$v` bound to the vector inside any [`TensorData`] variant.
macro_rules! each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::Bool($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::F64(_) => DType::F64,
            TensorData::I16(_) => DType::I16,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_data!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A vector of `n` zeros (`false` for [`DType::Bool`]) of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
            DType::BF16 => TensorData::BF16(vec![bf16::ZERO; n]),
            DType::I8 => TensorData::I8(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::I16 => TensorData::I16(vec![0; n]),
            DType::U16 => TensorData::U16(vec![0; n]),
            DType::U32 => TensorData::U32(vec![0; n]),
            DType::U64 => TensorData::U64(vec![0; n]),
        }
    }

    /// Every element as `f64`, for printing and comparison (`true` is 1, `false` 0).
    ///
    /// Exact for every dtype except `i64` / `u64` values beyond 2^53, which round.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| u8::from(x) as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The element at flat index `i` written as text (`1.5`, `-3`, `true`), or `None` when
    /// `i` is out of range.
    pub fn format_element(&self, i: usize) -> Option<String> {
        each_data!(self, v => v.get(i).map(|x| x.to_string()))
    }
}

/// A Rust element type that a [`Tensor`] can hold.
///
/// Implemented for `f32`, `f16`, `bf16`, `f64`, `i8`, `u8`, `i16`, `u16`, `i32`, `u32`, `i64`,
/// `u64` and `bool`.
pub trait Element: Copy + Send + Sync + fmt::Debug + 'static {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Wraps a vector into [`TensorData`].
    fn into_data(v: Vec<Self>) -> TensorData;
    /// Borrows the elements if `data` holds this type.
    fn slice(data: &TensorData) -> Option<&[Self]>;
    /// Mutably borrows the elements if `data` holds this type.
    fn slice_mut(data: &mut TensorData) -> Option<&mut [Self]>;
    /// Takes the vector out if `data` holds this type, or gives `data` back.
    fn from_data(data: TensorData) -> std::result::Result<Vec<Self>, TensorData>;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn into_data(v: Vec<Self>) -> TensorData {
                TensorData::$variant(v)
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(data: &mut TensorData) -> Option<&mut [Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn from_data(data: TensorData) -> std::result::Result<Vec<Self>, TensorData> {
                match data {
                    TensorData::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}

element!(f32, F32);
element!(f16, F16);
element!(bf16, BF16);
element!(i8, I8);
element!(u8, U8);
element!(i32, I32);
element!(i64, I64);
element!(bool, Bool);
element!(f64, F64);
element!(i16, I16);
element!(u16, U16);
element!(u32, U32);
element!(u64, U64);

/// A host tensor: a shape, a [`DType`] and contiguous row-major storage.
///
/// This is the currency every backend accepts and returns. Conversions to and from
/// [`ndarray::ArrayD`] move the buffer without copying when the array is in standard
/// (row-major, contiguous) layout; [`Tensor::view`] borrows without copying.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::Tensor(format!(
                "shape {shape:?} has more elements than fit in usize"
            ))
        })
}

impl Tensor {
    /// Builds a tensor from a shape and a vector of elements (row-major).
    ///
    /// Errors when the vector's length is not the product of the shape.
    pub fn from_vec<T: Element>(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        Self::from_data(shape, T::into_data(data))
    }

    /// Builds a tensor from a shape and already-typed storage.
    pub fn from_data(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Self> {
        let shape = shape.into();
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(Error::Tensor(format!(
                "shape {shape:?} needs {n} elements, the {} buffer has {}",
                data.dtype(),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        let n = checked_numel(&shape)?;
        let data = TensorData::zeros(dtype, n);
        Ok(Tensor { shape, data })
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Self {
        Tensor {
            shape: vec![],
            data: T::into_data(vec![value]),
        }
    }

    /// The shape (row-major dimensions).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements (a zero-sized dimension).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Splits into shape and storage.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    fn dtype_err(&self, want: DType) -> Error {
        Error::Tensor(format!("tensor holds {}, not {want}", self.dtype()))
    }

    /// Borrows the elements as a flat slice; errors if the dtype is not `T`.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        T::slice(&self.data).ok_or_else(|| self.dtype_err(T::DTYPE))
    }

    /// Mutably borrows the elements as a flat slice; errors if the dtype is not `T`.
    pub fn as_slice_mut<T: Element>(&mut self) -> Result<&mut [T]> {
        let dt = self.dtype();
        T::slice_mut(&mut self.data)
            .ok_or_else(|| Error::Tensor(format!("tensor holds {dt}, not {}", T::DTYPE)))
    }

    /// Takes the elements out as a vector; errors if the dtype is not `T`.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>> {
        let dt = self.dtype();
        T::from_data(self.data)
            .map_err(|_| Error::Tensor(format!("tensor holds {dt}, not {}", T::DTYPE)))
    }

    /// A zero-copy `ndarray` view; errors if the dtype is not `T`.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let s = self.as_slice::<T>()?;
        ArrayViewD::from_shape(IxDyn(&self.shape), s).map_err(|e| Error::Tensor(e.to_string()))
    }

    /// A zero-copy mutable `ndarray` view; errors if the dtype is not `T`.
    pub fn view_mut<T: Element>(&mut self) -> Result<ArrayViewMutD<'_, T>> {
        let shape = self.shape.clone();
        let s = self.as_slice_mut::<T>()?;
        ArrayViewMutD::from_shape(IxDyn(&shape), s).map_err(|e| Error::Tensor(e.to_string()))
    }

    /// Converts into an owned `ndarray` array without copying the buffer.
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        let shape = self.shape.clone();
        let v = self.into_vec::<T>()?;
        ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| Error::Tensor(e.to_string()))
    }

    /// Builds from an `ndarray` array: moves the buffer when the array is in standard layout
    /// with no offset, and copies into row-major order otherwise.
    pub fn from_array<T: Element>(array: ArrayD<T>) -> Self {
        let shape = array.shape().to_vec();
        let vec = if array.is_standard_layout() {
            match array.into_raw_vec_and_offset() {
                (v, Some(0)) | (v, None) => v,
                (v, Some(off)) => {
                    let n = checked_numel(&shape).unwrap_or(0);
                    v[off..off + n].to_vec()
                }
            }
        } else {
            array.iter().copied().collect()
        };
        Tensor {
            shape,
            data: T::into_data(vec),
        }
    }

    /// Reinterprets the tensor with a new shape of the same element count (no copy).
    pub fn reshape(self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let (_, data) = self.into_parts();
        Tensor::from_data(shape, data)
    }
}

impl<T: Element> From<ArrayD<T>> for Tensor {
    fn from(a: ArrayD<T>) -> Self {
        Tensor::from_array(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Axis};

    #[test]
    fn shape_mismatch_is_an_error() {
        let e = Tensor::from_vec(vec![2, 2], vec![1.0f32; 3]).unwrap_err();
        assert!(e.to_string().contains("needs 4 elements"), "{e}");
    }

    #[test]
    fn overflowing_shape_is_an_error() {
        assert!(Tensor::zeros(DType::U8, vec![usize::MAX, 2]).is_err());
    }

    #[test]
    fn ndarray_round_trip_moves_the_buffer() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).map(|x| x as f32).collect()).unwrap();
        let ptr = a.as_ptr();
        let t = Tensor::from_array(a);
        assert_eq!(
            t.as_slice::<f32>().unwrap().as_ptr(),
            ptr,
            "from_array copied"
        );
        let b = t.into_array::<f32>().unwrap();
        assert_eq!(b.as_ptr(), ptr, "into_array copied");
        assert_eq!(b[[1, 0]], 3.0);
    }

    #[test]
    fn non_standard_layout_is_copied_in_row_major_order() {
        let a = Array2::from_shape_vec((2, 3), vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let t = Tensor::from_array(a.t().to_owned().into_dyn().reversed_axes().reversed_axes());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, 4, 2, 5, 3, 6]);
        let sliced = Array2::from_shape_vec((2, 3), vec![1u8, 2, 3, 4, 5, 6]).unwrap();
        let col = sliced.index_axis(Axis(1), 1).to_owned().into_dyn();
        assert_eq!(Tensor::from_array(col).as_slice::<u8>().unwrap(), &[2, 5]);
    }

    #[test]
    fn wrong_dtype_access_is_an_error() {
        let t = Tensor::from_vec(vec![1], vec![1i32]).unwrap();
        assert!(t.as_slice::<f32>().is_err());
        assert!(t.view::<i64>().is_err());
        assert_eq!(t.view::<i32>().unwrap()[[0]], 1);
    }

    #[test]
    fn every_dtype_zeros() {
        for dt in DType::ALL {
            let t = Tensor::zeros(dt, vec![2, 0, 3]).unwrap();
            assert_eq!(t.dtype(), dt);
            assert!(t.is_empty());
            let t = Tensor::zeros(dt, vec![2]).unwrap();
            assert_eq!(t.data().to_f64_vec(), vec![0.0, 0.0]);
            assert_eq!(DType::from_name(dt.name()), Some(dt));
        }
        assert_eq!(DType::from_name("float"), None);
    }

    #[test]
    fn new_dtypes_are_typed_end_to_end() {
        let b = Tensor::from_vec(vec![3], vec![true, false, true]).unwrap();
        assert_eq!(b.dtype(), DType::Bool);
        assert_eq!(b.as_slice::<bool>().unwrap(), &[true, false, true]);
        assert!(b.as_slice::<u8>().is_err(), "bool must not read as u8");
        assert_eq!(b.data().format_element(1).as_deref(), Some("false"));
        assert_eq!(b.data().to_f64_vec(), vec![1.0, 0.0, 1.0]);
        let u = Tensor::from_vec(vec![2], vec![u64::MAX, 0]).unwrap();
        assert_eq!(u.data().format_element(0).unwrap(), u64::MAX.to_string());
        assert!(u.as_slice::<i64>().unwrap_err().to_string().contains("u64"));
        let a = Tensor::from_vec(vec![2, 1], vec![-3i16, 4])
            .unwrap()
            .view::<i16>()
            .unwrap()[[1, 0]];
        assert_eq!(a, 4);
        assert_eq!(Tensor::scalar(2.5f64).into_vec::<f64>().unwrap(), vec![2.5]);
        assert_eq!(Tensor::scalar(7u16).dtype().size(), 2);
        assert_eq!(Tensor::scalar(7u32).dtype().size(), 4);
        assert_eq!(DType::U64.size(), 8);
        assert_eq!(DType::Bool.size(), 1);
    }
}
