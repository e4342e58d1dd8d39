//! NumPy `.npy` files to and from [`Tensor`].
//!
//! Reads format versions 1.0, 2.0 and 3.0 and writes 1.0 (2.0 when the header does not fit
//! in 64 KiB), C order only. Element types are [`DType`]'s set that NumPy can express:
//!
//! | NumPy `descr`         | [`DType`] |
//! |-----------------------|-----------|
//! | `<f4`                 | F32       |
//! | `<f2`                 | F16       |
//! | `|i1`                 | I8        |
//! | `|u1`                 | U8        |
//! | `<i4`                 | I32       |
//! | `<i8`                 | I64       |
//! | `|b1`                 | Bool      |
//! | `<f8`                 | F64       |
//! | `<i2`                 | I16       |
//! | `<u2`                 | U16       |
//! | `<u4`                 | U32       |
//! | `<u8`                 | U64       |
//!
//! Anything else is an error that names the type (complex, strings, datetimes...), as are
//! big-endian data (`>f4`), `fortran_order: True` arrays, a bool byte other than 0 or 1, and a
//! [`DType::BF16`] tensor cannot be written (NumPy has no bfloat16).
//!
//! Malformed input is an error, never a panic: a bad magic string, an unparsable header, a
//! shape whose element count overflows, or data shorter or longer than the shape says. The
//! reader never allocates more than the input's length justifies.
//!
//! ```
//! use edgeai_core::{npy, Tensor};
//!
//! let t = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let bytes = npy::to_bytes(&t).unwrap();
//! assert_eq!(&bytes[..6], b"\x93NUMPY");
//! assert_eq!(npy::from_bytes(&bytes).unwrap(), t);
//! ```

use std::path::Path;

use half::f16;

use crate::{DType, Error, Result, Tensor, TensorData};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Reads a `.npy` file. Errors name the file.
pub fn read(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|reason| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("invalid .npy file: {reason}"),
            ),
        )
    })
}

/// Writes `tensor` as a `.npy` file (see [`to_bytes`]).
pub fn write(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(tensor)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Parses the bytes of a `.npy` file.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor> {
    parse(bytes).map_err(|r| Error::Tensor(format!("invalid .npy data: {r}")))
}

/// The NumPy `descr` string for a dtype, or `None` for [`DType::BF16`].
pub fn descr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
        DType::F64 => "<f8",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::BF16 => return None,
    })
}

/// Serialises a tensor as `.npy` bytes (version 1.0, little-endian, C order; the header is
/// padded so the data starts on a 64-byte boundary, as NumPy does).
///
/// Errors for [`DType::BF16`], which NumPy cannot represent.
pub fn to_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let descr = descr(tensor.dtype()).ok_or_else(|| {
        Error::Tensor(format!(
            "cannot write a {} tensor as .npy: NumPy has no such dtype",
            tensor.dtype()
        ))
    })?;
    let shape = match tensor.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic(6) + version(2) + length(2 or 4) + dict + padding + '\n' ≡ 0 (mod 64)
    let (version, len_bytes) = if dict.len() + 1 + 10 <= u16::MAX as usize {
        (1u8, 2usize)
    } else {
        (2u8, 4usize)
    };
    let unpadded = MAGIC.len() + 2 + len_bytes + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + header_len + byte_len(tensor));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        // The branch above guarantees the header length fits in a u16.
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let n = u32::try_from(header_len)
            .map_err(|_| Error::Tensor("npy header too long".to_string()))?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + header_len - dict.len() - 1, b' ');
    out.push(b'\n');
    write_data(&mut out, tensor.data());
    Ok(out)
}

fn byte_len(t: &Tensor) -> usize {
    t.len() * t.dtype().size()
}

fn write_data(out: &mut Vec<u8>, data: &TensorData) {
    match data {
        TensorData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::BF16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => v.iter().for_each(|&x| out.push(u8::from(x))),
        TensorData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

/// Parses a whole `.npy` file; the error is a reason without the origin.
fn parse(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a NumPy .npy file (bad magic string)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, header_start) = match major {
        1 => (2usize, 10usize),
        2 | 3 => (4, 12),
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    if bytes.len() < header_start {
        return Err("truncated header".into());
    }
    let header_len = match len_bytes {
        2 => u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        _ => u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "truncated header: it claims {header_len} bytes, the file has {}",
                bytes.len() - header_start
            )
        })?;
    let raw = &bytes[header_start..data_start];
    let header = if major == 3 {
        std::str::from_utf8(raw).map_err(|_| "header is not valid UTF-8".to_string())?
    } else {
        // Versions 1 and 2 are latin-1; the dictionaries NumPy writes are ASCII.
        std::str::from_utf8(raw).map_err(|_| "header is not ASCII".to_string())?
    };
    let h = parse_header(header)?;
    let dtype = dtype_of(&h.descr)?;
    if h.fortran_order {
        return Err("fortran_order is True: only C-order arrays are supported \
             (save with np.ascontiguousarray)"
            .into());
    }
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {:?} has too many elements", h.shape))?;
    let need = count
        .checked_mul(dtype.size())
        .ok_or_else(|| format!("shape {:?} has too many elements", h.shape))?;
    let data = &bytes[data_start..];
    if data.len() != need {
        return Err(format!(
            "shape {:?} of {} needs {need} data bytes, the file has {}",
            h.shape,
            dtype,
            data.len()
        ));
    }
    let td = decode(dtype, data)?;
    Tensor::from_data(h.shape, td).map_err(|e| e.to_string())
}

fn decode(dtype: DType, data: &[u8]) -> std::result::Result<TensorData, String> {
    fn le<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(le(data, f32::from_le_bytes)),
        DType::F16 => TensorData::F16(le(data, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DType::BF16 => TensorData::BF16(le(data, |b| half::bf16::from_bits(u16::from_le_bytes(b)))),
        DType::I8 => TensorData::I8(data.iter().map(|&b| b as i8).collect()),
        DType::U8 => TensorData::U8(data.to_vec()),
        DType::I32 => TensorData::I32(le(data, i32::from_le_bytes)),
        DType::I64 => TensorData::I64(le(data, i64::from_le_bytes)),
        DType::Bool => TensorData::Bool(
            data.iter()
                .enumerate()
                .map(|(i, &b)| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(format!(
                        "bool element {i} is byte {b:#04x}; NumPy bools are 0 or 1"
                    )),
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
        DType::F64 => TensorData::F64(le(data, f64::from_le_bytes)),
        DType::I16 => TensorData::I16(le(data, i16::from_le_bytes)),
        DType::U16 => TensorData::U16(le(data, u16::from_le_bytes)),
        DType::U32 => TensorData::U32(le(data, u32::from_le_bytes)),
        DType::U64 => TensorData::U64(le(data, u64::from_le_bytes)),
    })
}

fn dtype_of(descr: &str) -> std::result::Result<DType, String> {
    let unsupported = |what: &str| {
        Err(format!(
            "dtype '{descr}' ({what}) is not supported; supported: float32 '<f4', float16 '<f2', \
             float64 '<f8', int8 '|i1', uint8 '|u1', int16 '<i2', uint16 '<u2', int32 '<i4', \
             uint32 '<u4', int64 '<i8', uint64 '<u8', bool '|b1'"
        ))
    };
    let mut chars = descr.chars();
    let (order, code) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
        _ => ('|', descr),
    };
    let little = matches!(order, '<' | '|') || (order == '=' && cfg!(target_endian = "little"));
    let one_byte = matches!(code, "i1" | "u1" | "b1" | "b" | "B" | "?");
    if !little && !one_byte {
        return Err(format!(
            "dtype '{descr}' is big-endian; only little-endian data is supported \
             (save with .astype('<{code}'))"
        ));
    }
    match code {
        "f4" => Ok(DType::F32),
        "f2" | "e" => Ok(DType::F16),
        "i1" | "b" => Ok(DType::I8),
        "u1" | "B" => Ok(DType::U8),
        "i4" => Ok(DType::I32),
        "i8" => Ok(DType::I64),
        "f8" | "d" => Ok(DType::F64),
        "b1" | "?" => Ok(DType::Bool),
        "i2" | "h" => Ok(DType::I16),
        "u2" | "H" => Ok(DType::U16),
        "u4" => Ok(DType::U32),
        "u8" => Ok(DType::U64),
        "c8" | "c16" => unsupported("complex"),
        "f16" | "g" => unsupported("long double"),
        _ => unsupported("unknown"),
    }
}

#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut p = Lit {
        s: text.as_bytes(),
        i: 0,
    };
    let bad = |what: &str| format!("bad header dictionary ({what}): {}", text.trim_end());
    p.ws();
    if !p.eat(b'{') {
        return Err(bad("no opening brace"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.ws();
        if !p.eat(b':') {
            return Err(bad("expected ':'"));
        }
        p.ws();
        match key.as_str() {
            "descr" => {
                descr = Some(p.string().ok_or_else(|| {
                    bad("descr must be a string (structured dtypes are not supported)")
                })?)
            }
            "fortran_order" => {
                fortran = Some(if p.word("True") {
                    true
                } else if p.word("False") {
                    false
                } else {
                    return Err(bad("fortran_order must be True or False"));
                })
            }
            "shape" => {
                shape = Some(
                    p.tuple()
                        .ok_or_else(|| bad("shape must be a tuple of integers"))?,
                )
            }
            _ => return Err(bad(&format!("unexpected key '{key}'"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            return Err(bad("expected ',' or '}'"));
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(bad("text after the closing brace"));
    }
    Ok(Header {
        descr: descr.ok_or_else(|| bad("no 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| bad("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| bad("no 'shape'"))?,
    })
}

/// A cursor over a Python literal.
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lit<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self, w: &str) -> bool {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            true
        } else {
            false
        }
    }
    /// A '...' or "..." string without escapes.
    fn string(&mut self) -> Option<String> {
        let q = self.peek().filter(|c| *c == b'\'' || *c == b'"')?;
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == q)?;
        let text = std::str::from_utf8(&self.s[start..start + len]).ok()?;
        if text.contains('\\') {
            return None;
        }
        self.i = start + len + 1;
        Some(text.to_string())
    }
    fn int(&mut self) -> Option<usize> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        self.eat(b'L'); // Python 2 longs
        Some(n)
    }
    /// `()`, `(n,)`, `(a, b, ...)` with an optional trailing comma.
    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Some(v);
            }
            v.push(self.int()?);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                return self.eat(b')').then_some(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(t: Tensor) {
        let b = to_bytes(&t).unwrap();
        let header_end = b.iter().position(|&c| c == b'\n').unwrap() + 1;
        assert_eq!(header_end % 64, 0, "data must start 64-byte aligned");
        assert_eq!(from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn every_supported_dtype_roundtrips() {
        roundtrip(Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 0.0, 3.25, 1e-8, -7.0]).unwrap());
        roundtrip(
            Tensor::from_vec(
                vec![3],
                vec![f16::from_f32(1.0), f16::from_f32(-0.5), f16::MAX],
            )
            .unwrap(),
        );
        roundtrip(Tensor::from_vec(vec![2, 2], vec![-128i8, 127, 0, -1]).unwrap());
        roundtrip(Tensor::from_vec(vec![4], vec![0u8, 1, 254, 255]).unwrap());
        roundtrip(Tensor::from_vec(vec![1, 2], vec![i32::MIN, i32::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![i64::MIN, 42]).unwrap());
        roundtrip(Tensor::from_vec(vec![0, 3], Vec::<f32>::new()).unwrap());
        roundtrip(Tensor::from_vec(vec![2, 2], vec![true, false, false, true]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![f64::MIN, -0.0, 1e-300]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![i16::MIN, -1, i16::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![0u16, 1, u16::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![0u32, 1, u32::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![0u64, i64::MAX as u64 + 1, u64::MAX]).unwrap());
        roundtrip(Tensor::scalar(true));
        roundtrip(Tensor::scalar(3.5f32));
    }

    #[test]
    fn header_is_what_numpy_writes() {
        let t = Tensor::from_vec(vec![3], vec![1i64, 2, 3]).unwrap();
        let b = to_bytes(&t).unwrap();
        assert_eq!(&b[6..8], &[1, 0]);
        let len = u16::from_le_bytes([b[8], b[9]]) as usize;
        let h = std::str::from_utf8(&b[10..10 + len]).unwrap();
        assert!(h.starts_with("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }"));
        assert!(h.ends_with('\n'));
        assert_eq!(b.len(), 10 + len + 24);
    }

    #[test]
    fn new_dtypes_have_numpy_descrs() {
        for (dt, d) in [
            (DType::Bool, "|b1"),
            (DType::F64, "<f8"),
            (DType::I16, "<i2"),
            (DType::U16, "<u2"),
            (DType::U32, "<u4"),
            (DType::U64, "<u8"),
        ] {
            assert_eq!(descr(dt), Some(d));
            assert_eq!(dtype_of(d), Ok(dt));
            let b = to_bytes(&Tensor::zeros(dt, vec![1]).unwrap()).unwrap();
            let h = String::from_utf8_lossy(&b[10..]).to_string();
            assert!(h.starts_with(&format!("{{'descr': '{d}'")), "{h}");
        }
        for dt in DType::ALL {
            assert_eq!(descr(dt).is_none(), dt == DType::BF16, "{dt}");
        }
    }

    proptest::proptest! {
        #[test]
        fn u64_and_bool_roundtrip(v in proptest::collection::vec(proptest::num::u64::ANY, 0..40),
                                  b in proptest::collection::vec(proptest::bool::ANY, 0..40)) {
            let t = Tensor::from_vec(vec![v.len()], v).unwrap();
            proptest::prop_assert_eq!(from_bytes(&to_bytes(&t).unwrap()).unwrap(), t);
            let t = Tensor::from_vec(vec![b.len()], b).unwrap();
            proptest::prop_assert_eq!(from_bytes(&to_bytes(&t).unwrap()).unwrap(), t);
        }

        #[test]
        fn f64_i16_u16_u32_roundtrip(f in proptest::collection::vec(proptest::num::f64::ANY, 0..20),
                                     i in proptest::collection::vec(proptest::num::i16::ANY, 0..20),
                                     u in proptest::collection::vec(proptest::num::u16::ANY, 0..20),
                                     w in proptest::collection::vec(proptest::num::u32::ANY, 0..20)) {
            let t = Tensor::from_vec(vec![f.len()], f.clone()).unwrap();
            let back = from_bytes(&to_bytes(&t).unwrap()).unwrap().into_vec::<f64>().unwrap();
            // Bitwise, so NaN payloads count too.
            proptest::prop_assert_eq!(
                back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                f.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            for t in [
                Tensor::from_vec(vec![i.len()], i).unwrap(),
                Tensor::from_vec(vec![u.len()], u).unwrap(),
                Tensor::from_vec(vec![w.len()], w).unwrap(),
            ] {
                proptest::prop_assert_eq!(from_bytes(&to_bytes(&t).unwrap()).unwrap(), t);
            }
        }
    }

    #[test]
    fn bool_bytes_other_than_0_or_1_are_errors() {
        let h = "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }";
        assert!(from_bytes(&npy(1, h, &[0, 1, 1])).is_ok());
        let e = err(&npy(1, h, &[0, 2, 1]));
        assert!(e.contains("bool element 1") && e.contains("0x02"), "{e}");
    }

    #[test]
    fn bf16_cannot_be_written() {
        let t = Tensor::zeros(DType::BF16, vec![2]).unwrap();
        assert!(to_bytes(&t).unwrap_err().to_string().contains("bf16"));
    }

    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[version, 0]);
        if version == 1 {
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    fn err(b: &[u8]) -> String {
        from_bytes(b).unwrap_err().to_string()
    }

    #[test]
    fn versions_2_and_3_and_header_variants_are_read() {
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        for v in [1, 2, 3] {
            let t = from_bytes(&npy(
                v,
                "{\"descr\":\"<f4\",\"shape\":(2L,),\"fortran_order\":False}\n",
                &data,
            ))
            .unwrap();
            assert_eq!(t.as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        }
        let t = from_bytes(&npy(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), }",
            &[7, 8],
        ))
        .unwrap();
        assert_eq!(t.shape(), &[1, 2]);
    }

    #[test]
    fn malformed_files_are_errors() {
        let f4 = |shape: &str| {
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n")
        };
        assert!(err(b"").contains("bad magic"));
        assert!(err(b"\x93NUMPX\x01\x00").contains("bad magic"));
        assert!(err(b"\x93NUMPY\x09\x00\x00\x00").contains("version 9.0"));
        assert!(err(b"\x93NUMPY\x01\x00\xff").contains("truncated"));
        assert!(err(b"\x93NUMPY\x01\x00\xff\xff{}").contains("truncated header"));
        assert!(err(&npy(1, &f4("(2,)"), &[0; 4])).contains("needs 8 data bytes, the file has 4"));
        assert!(err(&npy(1, &f4("(2,)"), &[0; 12])).contains("needs 8"));
        let huge = npy(1, &f4("(4294967296, 4294967296, 16)"), &[0; 8]);
        assert!(err(&huge).contains("too many elements"), "{}", err(&huge));
        let huge = npy(1, &f4(&format!("({},)", usize::MAX / 2)), &[0; 8]);
        assert!(err(&huge).contains("too many elements"));
        assert!(err(&npy(1, &f4("(99999999999999999999999,)"), &[])).contains("bad header"));
        assert!(err(&npy(
            1,
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8]
        ))
        .contains("complex"));
        assert!(err(&npy(
            1,
            "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }",
            &[0; 12]
        ))
        .contains("'<U3'"));
        assert!(err(&npy(
            1,
            "{'descr': '>u8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8]
        ))
        .contains("big-endian"));
        assert!(err(&npy(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            &[0; 4]
        ))
        .contains("big-endian"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            &[0; 4]
        ))
        .contains("fortran_order"));
        assert!(err(&npy(
            1,
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 4]
        ))
        .contains("structured"));
        assert!(err(&npy(1, "{'descr': '<f4', 'shape': (1,), }", &[0; 4]))
            .contains("no 'fortran_order'"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            &[0; 4]
        ))
        .contains("unexpected key"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk",
            &[0; 4]
        ))
        .contains("after the closing"));
        assert!(err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,",
            &[0; 4]
        ))
        .contains("bad header"));
        assert!(err(&npy(3, "{'descr': '\u{ff}\u{fe}", &[])).contains("bad header"));
        assert!(err(&npy(1, "", &[])).contains("bad header"));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let t = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let b = to_bytes(&t).unwrap();
        for n in 0..b.len() {
            assert!(from_bytes(&b[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        // Flipping any header byte is handled (error or a different valid array).
        for i in 0..b.len() - 24 {
            let mut c = b.clone();
            c[i] ^= 0x5a;
            let _ = from_bytes(&c);
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = std::env::temp_dir().join(format!("edgeai-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.npy");
        std::fs::write(&p, b"hello").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("bad.npy") && e.contains("bad magic"), "{e}");
        let t = Tensor::from_vec(vec![2], vec![5u8, 6]).unwrap();
        let q = dir.join("ok.npy");
        write(&q, &t).unwrap();
        assert_eq!(read(&q).unwrap(), t);
        let e = read(dir.join("missing.npy")).unwrap_err().to_string();
        assert!(e.contains("missing.npy"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The Python with NumPy that `scripts/fetch-models` sets up, if present.
    fn numpy_python() -> Option<std::path::PathBuf> {
        let py = crate::paths::models_dir(std::env::var_os(crate::paths::MODELS_ENV))?
            .join(".venv/bin/python");
        let ok = std::process::Command::new(&py)
            .args(["-c", "import numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then_some(py)
    }

    #[test]
    fn files_written_by_numpy_are_read_and_ours_are_read_by_numpy() {
        let Some(py) = numpy_python() else {
            eprintln!(
                "skipping: models/.venv/bin/python with numpy not found (run scripts/fetch-models)"
            );
            return;
        };
        let dir = std::env::temp_dir().join(format!("edgeai-npy-numpy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = r#"
import sys, numpy as np
d = sys.argv[1]
a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7 - 1
np.save(d + '/f32.npy', a)
np.save(d + '/f16.npy', np.array([0.5, -2, 65504], dtype=np.float16))
np.save(d + '/i8.npy', np.array([[-128, 127], [0, -1]], dtype=np.int8))
np.save(d + '/u8.npy', np.arange(256, dtype=np.uint8))
np.save(d + '/i32.npy', np.array([-(2**31), 2**31 - 1], dtype=np.int32))
np.save(d + '/i64.npy', np.array(7, dtype=np.int64))
np.save(d + '/f64.npy', np.array([0.1, -2.5, 1e300]))
np.save(d + '/bool.npy', np.array([[True, False], [False, True]]))
np.save(d + '/i16.npy', np.array([-(2**15), 2**15 - 1], dtype=np.int16))
np.save(d + '/u16.npy', np.array([0, 2**16 - 1], dtype=np.uint16))
np.save(d + '/u32.npy', np.array([0, 2**32 - 1], dtype=np.uint32))
np.save(d + '/u64.npy', np.array([0, 2**64 - 1], dtype=np.uint64))
np.save(d + '/c64.npy', np.zeros(3, dtype=np.complex64))
np.save(d + '/fortran.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
np.save(d + '/big.npy', np.ones(3, dtype='>f4'))
np.lib.format.write_array(open(d + '/v2.npy', 'wb'), np.ones((2, 2), dtype=np.float32), version=(2, 0))
np.lib.format.write_array(open(d + '/v3.npy', 'wb'), np.ones((1,), dtype=np.int32), version=(3, 0))
"#;
        let st = std::process::Command::new(&py)
            .args(["-c", script])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let f32s = read(dir.join("f32.npy")).unwrap();
        assert_eq!(f32s.shape(), &[2, 3, 4]);
        let v = f32s.as_slice::<f32>().unwrap();
        assert_eq!(v[0], 0.0f32 / 7.0 - 1.0);
        assert_eq!(v[23], 23.0f32 / 7.0 - 1.0);
        let f16s = read(dir.join("f16.npy")).unwrap();
        assert_eq!(
            f16s.as_slice::<f16>().unwrap(),
            &[f16::from_f32(0.5), f16::from_f32(-2.0), f16::MAX]
        );
        assert_eq!(
            read(dir.join("i8.npy")).unwrap(),
            Tensor::from_vec(vec![2, 2], vec![-128i8, 127, 0, -1]).unwrap()
        );
        assert_eq!(
            read(dir.join("u8.npy")).unwrap().as_slice::<u8>().unwrap()[255],
            255
        );
        assert_eq!(
            read(dir.join("i32.npy"))
                .unwrap()
                .as_slice::<i32>()
                .unwrap(),
            &[i32::MIN, i32::MAX]
        );
        assert_eq!(read(dir.join("i64.npy")).unwrap(), Tensor::scalar(7i64));
        assert_eq!(read(dir.join("v2.npy")).unwrap().shape(), &[2, 2]);
        assert_eq!(
            read(dir.join("v3.npy")).unwrap().as_slice::<i32>().unwrap(),
            &[1]
        );
        assert_eq!(
            read(dir.join("f64.npy")).unwrap(),
            Tensor::from_vec(vec![3], vec![0.1f64, -2.5, 1e300]).unwrap()
        );
        assert_eq!(
            read(dir.join("bool.npy")).unwrap(),
            Tensor::from_vec(vec![2, 2], vec![true, false, false, true]).unwrap()
        );
        assert_eq!(
            read(dir.join("i16.npy")).unwrap(),
            Tensor::from_vec(vec![2], vec![i16::MIN, i16::MAX]).unwrap()
        );
        assert_eq!(
            read(dir.join("u16.npy")).unwrap(),
            Tensor::from_vec(vec![2], vec![0u16, u16::MAX]).unwrap()
        );
        assert_eq!(
            read(dir.join("u32.npy")).unwrap(),
            Tensor::from_vec(vec![2], vec![0u32, u32::MAX]).unwrap()
        );
        let u64s = read(dir.join("u64.npy")).unwrap();
        assert_eq!(
            u64s,
            Tensor::from_vec(vec![2], vec![0u64, u64::MAX]).unwrap()
        );
        for (f, what) in [
            ("c64", "complex"),
            ("fortran", "fortran_order"),
            ("big", "big-endian"),
        ] {
            let e = read(dir.join(format!("{f}.npy"))).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains(&format!("{f}.npy")), "{e}");
        }

        // And NumPy reads what we write, bit for bit.
        write(dir.join("ours_f32.npy"), &f32s).unwrap();
        write(
            dir.join("ours_i64.npy"),
            &Tensor::from_vec(vec![3], vec![1i64, -2, 3]).unwrap(),
        )
        .unwrap();
        write(dir.join("ours_f16.npy"), &f16s).unwrap();
        write(dir.join("ours_u64.npy"), &u64s).unwrap();
        write(
            dir.join("ours_bool.npy"),
            &Tensor::from_vec(vec![3], vec![true, false, true]).unwrap(),
        )
        .unwrap();
        write(
            dir.join("ours_f64.npy"),
            &Tensor::from_vec(vec![2], vec![0.1f64, -1e300]).unwrap(),
        )
        .unwrap();
        write(
            dir.join("ours_i16.npy"),
            &Tensor::from_vec(vec![2], vec![i16::MIN, 7]).unwrap(),
        )
        .unwrap();
        write(dir.join("ours_u16.npy"), &Tensor::scalar(u16::MAX)).unwrap();
        write(dir.join("ours_u32.npy"), &Tensor::scalar(u32::MAX)).unwrap();
        let check = r#"
import sys, numpy as np
d = sys.argv[1]
a = np.load(d + '/ours_f32.npy')
assert a.dtype == np.float32 and a.shape == (2, 3, 4), (a.dtype, a.shape)
assert (a == np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7 - 1).all()
b = np.load(d + '/ours_i64.npy')
assert b.dtype == np.int64 and b.tolist() == [1, -2, 3]
c = np.load(d + '/ours_f16.npy')
assert c.dtype == np.float16 and c.tolist() == [0.5, -2.0, 65504.0]
u = np.load(d + '/ours_u64.npy')
assert u.dtype == np.uint64 and u.tolist() == [0, 2**64 - 1], (u.dtype, u)
t = np.load(d + '/ours_bool.npy')
assert t.dtype == np.bool_ and t.tolist() == [True, False, True]
f = np.load(d + '/ours_f64.npy')
assert f.dtype == np.float64 and f.tolist() == [0.1, -1e300]
i = np.load(d + '/ours_i16.npy')
assert i.dtype == np.int16 and i.tolist() == [-(2**15), 7]
h = np.load(d + '/ours_u16.npy')
assert h.dtype == np.uint16 and h.shape == () and int(h) == 2**16 - 1
w = np.load(d + '/ours_u32.npy')
assert w.dtype == np.uint32 and int(w) == 2**32 - 1
"#;
        let st = std::process::Command::new(&py)
            .args(["-c", check])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "NumPy rejected a file we wrote");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
