//! [`TensorProto`] to edgeai [`Tensor`]: the values of initializers, `Constant` nodes and the
//! `.pb` files of ONNX's backend test data (`test_data_set_N/input_M.pb`).
//!
//! A tensor whose ONNX data type has no [`DType`] (string, complex, float8, int4...) is an
//! [`Error::Tensor`] that names the tensor and the type, never a lossy conversion.

use std::path::Path;

use edgeai_core::half::{bf16, f16};
use edgeai_core::{DType, Error, Result, Tensor, TensorData};
use prost::Message;

use crate::proto::TensorProto;
use crate::summary::{elem_type_dtype, elem_type_name};

/// Converts a decoded [`TensorProto`] to a [`Tensor`], reading `raw_data` (little-endian) or
/// the typed fields (`float_data`, `int32_data`, `int64_data`; 16-bit floats as bit patterns
/// in `int32_data`).
///
/// Errors: a data type without a [`DType`] (the message says `unsupported dtype` and names
/// it), data in an external file, a negative dimension, or a value count that does not match
/// the dimensions.
///
/// ```
/// use edgeai_onnx::{build, tensor_from_proto};
///
/// let t = tensor_from_proto(&build::tensor_f32("x", &[2], &[1.0, -2.5]))?;
/// assert_eq!((t.shape(), t.as_slice::<f32>()?), (&[2usize][..], &[1.0f32, -2.5][..]));
/// let e = tensor_from_proto(&build::tensor_raw("c", &[1], 14, vec![0; 8])).unwrap_err();
/// assert_eq!(e.to_string(), "tensor: tensor `c`: unsupported dtype complex64 (ONNX data type 14)");
/// # Ok::<(), edgeai_core::Error>(())
/// ```
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor> {
    let name = &t.name;
    let err = |msg: String| Error::Tensor(format!("tensor `{name}`: {msg}"));
    if t.data_location == 1 {
        return Err(err(
            "its data is in an external file, which is not supported".into(),
        ));
    }
    let dtype = elem_type_dtype(t.data_type).ok_or_else(|| {
        err(format!(
            "unsupported dtype {} (ONNX data type {})",
            elem_type_name(t.data_type),
            t.data_type
        ))
    })?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("dimension {d} is negative"))))
        .collect::<Result<Vec<_>>>()?;
    let data = if t.raw_data.is_empty() {
        typed(t, dtype)
    } else {
        raw(&t.raw_data, dtype).ok_or_else(|| {
            err(format!(
                "raw_data has {} bytes, not a whole number of {dtype} values",
                t.raw_data.len()
            ))
        })?
    };
    let count = data.len();
    Tensor::from_data(shape, data).map_err(|_| {
        err(format!(
            "dimensions {:?} do not match its {count} {dtype} values",
            t.dims
        ))
    })
}

/// Decodes a serialized `TensorProto` (a `.pb` file's bytes) and converts it, see
/// [`tensor_from_proto`]. `origin` names the bytes in errors.
pub fn decode_tensor(bytes: &[u8], origin: &str) -> Result<Tensor> {
    let proto = TensorProto::decode(bytes)
        .map_err(|e| Error::Tensor(format!("{origin}: not a valid ONNX TensorProto: {e}")))?;
    tensor_from_proto(&proto).map_err(|e| match e {
        Error::Tensor(m) => Error::Tensor(format!("{origin}: {m}")),
        other => other,
    })
}

/// Reads a `.pb` file holding one serialized `TensorProto`; errors name the file.
pub fn read_tensor(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_tensor(&bytes, &path.display().to_string())
}

fn le<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
    if !raw.len().is_multiple_of(N) {
        return None;
    }
    Some(
        raw.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect(),
    )
}

fn raw(raw: &[u8], dtype: DType) -> Option<TensorData> {
    Some(match dtype {
        DType::F32 => TensorData::F32(le(raw, f32::from_le_bytes)?),
        DType::F16 => TensorData::F16(le(raw, f16::from_le_bytes)?),
        DType::BF16 => TensorData::BF16(le(raw, bf16::from_le_bytes)?),
        DType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DType::U8 => TensorData::U8(raw.to_vec()),
        DType::I32 => TensorData::I32(le(raw, i32::from_le_bytes)?),
        DType::I64 => TensorData::I64(le(raw, i64::from_le_bytes)?),
        DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DType::F64 => TensorData::F64(le(raw, f64::from_le_bytes)?),
        DType::I16 => TensorData::I16(le(raw, i16::from_le_bytes)?),
        DType::U16 => TensorData::U16(le(raw, u16::from_le_bytes)?),
        DType::U32 => TensorData::U32(le(raw, u32::from_le_bytes)?),
        DType::U64 => TensorData::U64(le(raw, u64::from_le_bytes)?),
    })
}

fn typed(t: &TensorProto, dtype: DType) -> TensorData {
    // The schema keeps every type narrower than 32 bits in int32_data (16-bit floats as
    // their bit patterns).
    let ints = &t.int32_data;
    match dtype {
        DType::F32 => TensorData::F32(t.float_data.clone()),
        DType::F16 => TensorData::F16(ints.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DType::BF16 => TensorData::BF16(ints.iter().map(|&x| bf16::from_bits(x as u16)).collect()),
        DType::I8 => TensorData::I8(ints.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(ints.iter().map(|&x| x as u8).collect()),
        DType::I32 => TensorData::I32(ints.clone()),
        DType::I64 => TensorData::I64(t.int64_data.clone()),
        DType::Bool => TensorData::Bool(ints.iter().map(|&x| x != 0).collect()),
        DType::I16 => TensorData::I16(ints.iter().map(|&x| x as i16).collect()),
        DType::U16 => TensorData::U16(ints.iter().map(|&x| x as u16).collect()),
        // The schema keeps uint32 and uint64 in uint64_data, double in double_data.
        DType::F64 => TensorData::F64(t.double_data.clone()),
        DType::U32 => TensorData::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
        DType::U64 => TensorData::U64(t.uint64_data.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use crate::proto::dt;

    #[test]
    fn raw_and_typed_fields_convert() {
        let t = tensor_from_proto(&build::tensor_i64("i", &[3], &[1, -2, 3])).unwrap();
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, -2, 3]);
        let raw: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = tensor_from_proto(&build::tensor_raw("r", &[1, 2], dt::FLOAT, raw)).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, 2.0]);
        let h = TensorProto {
            name: "h".into(),
            dims: vec![2],
            data_type: dt::FLOAT16,
            int32_data: vec![f16::from_f32(0.5).to_bits() as i32, 0x3c00],
            ..Default::default()
        };
        let t = tensor_from_proto(&h).unwrap();
        assert_eq!(
            t.as_slice::<f16>().unwrap(),
            &[f16::from_f32(0.5), f16::ONE]
        );
        let u = tensor_from_proto(&build::tensor_raw("u", &[2], dt::UINT8, vec![255, 7])).unwrap();
        assert_eq!(u.as_slice::<u8>().unwrap(), &[255, 7]);
        let s = tensor_from_proto(&build::tensor_f32("s", &[], &[4.0])).unwrap();
        assert_eq!(s.shape(), &[] as &[usize]);
        let e = tensor_from_proto(&build::tensor_f32("e", &[0, 3], &[])).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn bad_tensors_are_errors() {
        let msg = |t: TensorProto| tensor_from_proto(&t).unwrap_err().to_string();
        assert_eq!(
            msg(build::tensor_raw("d", &[1], 14, vec![0; 8])),
            "tensor: tensor `d`: unsupported dtype complex64 (ONNX data type 14)"
        );
        let b = tensor_from_proto(&build::tensor_raw("b", &[2], dt::BOOL, vec![1, 0])).unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[true, false]);
        let f = tensor_from_proto(&build::tensor_raw(
            "f",
            &[1],
            dt::DOUBLE,
            2.5f64.to_le_bytes().to_vec(),
        ))
        .unwrap();
        assert_eq!(f.as_slice::<f64>().unwrap(), &[2.5]);
        assert!(msg(build::tensor_f32("n", &[3], &[1.0])).contains("do not match its 1 f32"));
        assert!(msg(build::tensor_f32("m", &[-1], &[1.0])).contains("dimension -1 is negative"));
        assert!(msg(build::tensor_raw("x", &[1], dt::FLOAT, vec![0; 3])).contains("3 bytes"));
        let ext = TensorProto {
            data_location: 1,
            ..build::tensor_f32("ext", &[1], &[1.0])
        };
        assert!(msg(ext).contains("external file"));
        let e = decode_tensor(b"\xff\xff\xff", "in.pb")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tensor: in.pb: not a valid ONNX TensorProto"),
            "{e}"
        );
        assert!(read_tensor("/no/such/input_0.pb").is_err());
    }

    #[test]
    fn decoded_bytes_round_trip() {
        let bytes = build::tensor_f32("x", &[2], &[3.0, 4.0]).encode_to_vec();
        let t = decode_tensor(&bytes, "x.pb").unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[3.0, 4.0]);
    }
}
