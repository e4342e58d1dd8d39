//! GGUF v2/v3 reader: header, metadata, tensor infos, memory-mapped tensor data.
//!
//! The weights are never copied: [`GgufFile::tensor_data`] returns a slice of the memory map
//! (or of the bytes given to [`GgufFile::from_bytes`]). Every length read from the file is
//! bounded by the bytes that remain before anything is allocated, and every error names the
//! byte offset where the problem was found.
//!
//! ```no_run
//! let f = edgeai_llm::gguf::GgufFile::open("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! println!("{} tensors, arch {:?}", f.tensors().len(), f.get_str("general.architecture"));
//! # Ok::<(), edgeai_llm::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use edgeai_core::quant::GgmlType;

use crate::{Error, Result};

/// `"GGUF"` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Default tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted in metadata (arrays of arrays of ...).
const MAX_NESTING: usize = 8;
/// Most dimensions a tensor may have (ggml's limit).
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string (invalid UTF-8 is replaced lossily).
    String(String),
    /// An array; all elements share one type (arrays may nest).
    Array(Vec<Value>),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is any number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dimensions, innermost first (`dims[0]` = columns of a matrix).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the tensor-data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: usize,
}

impl TensorInfo {
    /// Number of elements (saturating at `u64::MAX`; a parsed file's never overflow).
    pub fn elements(&self) -> u64 {
        checked_product(&self.dims).unwrap_or(u64::MAX)
    }

    /// `(rows, cols)` of the tensor viewed as a matrix: `cols = dims[0]`, `rows` = the product
    /// of the other dimensions (saturating; a parsed file's never overflow).
    pub fn matrix_shape(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1);
        let rows = checked_product(self.dims.get(1..).unwrap_or(&[])).unwrap_or(u64::MAX);
        let us = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        (us(rows), us(cols))
    }
}

fn checked_product(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the memory map.
pub struct GgufFile {
    storage: Storage,
    origin: String,
    version: u32,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
    alignment: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only and private to this process; the file must not be
        // truncated or modified by someone else while mapped (the same contract as every
        // mmap-based model loader). We never hand out references that outlive `self`.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(Storage::Mmap(mmap), path.display().to_string())
    }

    /// Tells the kernel that this process no longer needs the mapped pages of bytes
    /// `start..start + len` (for weights that were copied elsewhere, e.g. repacked), so they
    /// stop counting towards its resident memory. The bytes stay readable: a later access
    /// reads them from the file again. A no-op for in-memory files; failures are ignored
    /// (the call is only a hint).
    pub fn release_pages(&self, start: usize, len: usize) {
        if let Storage::Mmap(m) = &self.storage {
            if start.checked_add(len).is_some_and(|end| end <= m.len()) && len > 0 {
                // SAFETY: the map is a read-only private file mapping that is never written,
                // so MADV_DONTNEED only drops page-table entries: the addresses stay mapped and
                // the next access faults the same file contents back in (the file must not be
                // modified while mapped, as for `open`). No reference is invalidated.
                let r = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
                };
                if let Err(e) = r {
                    tracing::debug!("madvise(DONTNEED) on {}: {e}", self.origin);
                }
            }
        }
    }

    /// Parses GGUF bytes held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Storage::Owned(bytes), "<bytes>".to_string())
    }

    fn parse(storage: Storage, origin: String) -> Result<Self> {
        let (version, metadata, tensors, data_offset, alignment) = {
            let mut r = Reader {
                buf: storage.bytes(),
                pos: 0,
                origin: &origin,
            };
            let magic = r.u32()?;
            if magic != GGUF_MAGIC {
                return Err(r.err_at(0, format!("bad magic {magic:#010x}, expected \"GGUF\"")));
            }
            let version = r.u32()?;
            if !(2..=3).contains(&version) {
                return Err(r.err_at(
                    4,
                    format!("unsupported GGUF version {version} (supported: 2, 3)"),
                ));
            }
            let tensor_count_pos = r.pos;
            let tensor_count = r.u64()?;
            let kv_count_pos = r.pos;
            let kv_count = r.u64()?;
            // Each tensor info takes at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset).
            r.check_count(tensor_count, 24, tensor_count_pos, "tensor count")?;
            // Each key/value takes at least 8 (key len) + 4 (type) + 1 (smallest value).
            r.check_count(kv_count, 13, kv_count_pos, "metadata count")?;

            let mut metadata = Vec::with_capacity(kv_count as usize);
            for _ in 0..kv_count {
                let key = r.string()?;
                let ty_pos = r.pos;
                let ty = r.u32()?;
                let value = r.value(ty, ty_pos, 0)?;
                metadata.push((key, value));
            }

            let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
                None => DEFAULT_ALIGNMENT,
                Some((_, v)) => match v.as_u64() {
                    Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                    _ => {
                        return Err(r.err_at(
                            r.pos as u64,
                            format!("general.alignment {v:?} is not a power of two"),
                        ))
                    }
                },
            };

            let mut infos = Vec::with_capacity(tensor_count as usize);
            for _ in 0..tensor_count {
                let start = r.pos as u64;
                let name = r.string()?;
                let nd_pos = r.pos as u64;
                let n_dims = r.u32()?;
                if n_dims == 0 || n_dims > MAX_DIMS {
                    return Err(r.err_at(
                        nd_pos,
                        format!("tensor `{name}` has {n_dims} dimensions (1..={MAX_DIMS} allowed)"),
                    ));
                }
                let mut dims = Vec::with_capacity(n_dims as usize);
                for _ in 0..n_dims {
                    dims.push(r.u64()?);
                }
                let ty_pos = r.pos as u64;
                let ty_id = r.u32()?;
                let ty = GgmlType::from_ggml_id(ty_id).ok_or_else(|| {
                    r.err_at(
                        ty_pos,
                        format!("tensor `{name}` has unknown or unsupported type id {ty_id}"),
                    )
                })?;
                let offset = r.u64()?;
                infos.push((start, name, dims, ty, offset));
            }
            let data_offset = align_up(r.pos as u64, alignment);
            let file_len = r.buf.len() as u64;
            if data_offset > file_len && !infos.is_empty() {
                return Err(r.err_at(
                    r.pos as u64,
                    format!("tensor data section starts at {data_offset}, past the end of the {file_len}-byte file"),
                ));
            }
            let avail = file_len.saturating_sub(data_offset);
            let mut tensors = Vec::with_capacity(infos.len());
            for (start, name, dims, ty, offset) in infos {
                // The rows (all dims but the first) must not overflow either: with a zero
                // first dim the full product is 0 whatever the others claim.
                let elements = checked_product(&dims)
                    .filter(|_| checked_product(&dims[1..]).is_some())
                    .filter(|&e| e <= file_len.saturating_mul(8))
                    .ok_or_else(|| {
                        r.err_at(
                            start,
                            format!(
                                "tensor `{name}` dims {dims:?} overflow or exceed the file size"
                            ),
                        )
                    })?;
                let cols = dims[0];
                let bl = ty.block_len() as u64;
                if bl == 0 || cols % bl != 0 {
                    return Err(r.err_at(
                        start,
                        format!("tensor `{name}`: {cols} columns are not a multiple of the {ty} block length {bl}"),
                    ));
                }
                let rows = elements.checked_div(cols).unwrap_or(0);
                let size = ty
                    .row_bytes(cols as usize)
                    .ok()
                    .and_then(|rb| (rb as u64).checked_mul(rows))
                    .ok_or_else(|| {
                        r.err_at(start, format!("tensor `{name}` byte size overflows"))
                    })?;
                if offset % alignment != 0 {
                    return Err(r.err_at(
                        start,
                        format!("tensor `{name}` offset {offset} is not aligned to {alignment}"),
                    ));
                }
                match offset.checked_add(size) {
                    Some(end) if end <= avail => {}
                    _ => {
                        return Err(r.err_at(
                            start,
                            format!(
                                "tensor `{name}` ({size} bytes at data offset {offset}) lies outside the file: data section holds {avail} bytes"
                            ),
                        ))
                    }
                }
                tensors.push(TensorInfo {
                    name,
                    dims,
                    ty,
                    offset,
                    size: size as usize,
                });
            }
            (version, metadata, tensors, data_offset, alignment)
        };
        let index = metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        tracing::debug!(
            origin,
            version,
            tensors = tensors.len(),
            metadata = metadata.len(),
            "GGUF parsed"
        );
        Ok(Self {
            storage,
            origin,
            version,
            metadata,
            index,
            tensors,
            tensor_index,
            data_offset,
            alignment,
        })
    }

    /// Where the file came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Tensor data alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor-data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A required unsigned integer.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key).ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: "missing".into(),
        })?;
        v.as_u64().ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: format!("expected an unsigned integer, found {}", v.type_name()),
        })
    }

    /// An optional float (absent -> `None`; present but not a number -> `Err`).
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::Metadata {
                key: key.into(),
                reason: format!("expected a number, found {}", v.type_name()),
            }),
        }
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn string_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.get(key).ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: "missing".into(),
        })?;
        let arr = v.as_array().ok_or_else(|| Error::Metadata {
            key: key.into(),
            reason: format!("expected an array of strings, found {}", v.type_name()),
        })?;
        arr.iter()
            .map(|e| {
                e.as_str().ok_or_else(|| Error::Metadata {
                    key: key.into(),
                    reason: format!("expected strings, found {}", e.type_name()),
                })
            })
            .collect()
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor's bytes (a slice of the memory map; bounds were checked at parse time).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        self.storage
            .bytes()
            .get(start..start + info.size)
            .unwrap_or(&[])
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a).saturating_mul(a)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl Reader<'_> {
    fn err_at(&self, offset: u64, reason: String) -> Error {
        Error::Gguf {
            origin: self.origin.to_string(),
            offset,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(self.err_at(
                self.pos as u64,
                format!(
                    "truncated: {what} needs {n} bytes, {} left",
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr("u32")?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr("u64")?))
    }

    /// Errors unless `count * min_size` bytes could still follow.
    fn check_count(&self, count: u64, min_size: u64, at: usize, what: &str) -> Result<()> {
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() as u64 => Ok(()),
            _ => Err(self.err_at(
                at as u64,
                format!(
                    "{what} {count} cannot fit in the {} bytes left",
                    self.remaining()
                ),
            )),
        }
    }

    fn string(&mut self) -> Result<String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > self.remaining() as u64 {
            return Err(self.err_at(
                at as u64,
                format!(
                    "string length {len} exceeds the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        let bytes = self.take(len as usize, "string")?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, ty_pos: usize, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>("u8")?[0]),
            1 => Value::I8(self.arr::<1>("i8")?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr("u16")?)),
            3 => Value::I16(i16::from_le_bytes(self.arr("i16")?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr("i32")?)),
            6 => Value::F32(f32::from_le_bytes(self.arr("f32")?)),
            7 => {
                let at = self.pos;
                match self.arr::<1>("bool")?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(self.err_at(at as u64, format!("bool value {b} is not 0 or 1")))
                    }
                }
            }
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(self.err_at(
                        ty_pos as u64,
                        format!("arrays nested deeper than {MAX_NESTING}"),
                    ));
                }
                let ety_pos = self.pos;
                let ety = self.u32()?;
                let len_pos = self.pos;
                let len = self.u64()?;
                let min = match ety {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(self.err_at(
                            ety_pos as u64,
                            format!("unknown array element type {other}"),
                        ))
                    }
                };
                self.check_count(len, min, len_pos, "array length")?;
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(self.value(ety, ety_pos, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr("i64")?)),
            12 => Value::F64(f64::from_le_bytes(self.arr("f64")?)),
            other => {
                return Err(self.err_at(
                    ty_pos as u64,
                    format!("unknown metadata value type {other}"),
                ))
            }
        })
    }
}

/// What `edgeai inspect` shows about a GGUF file: [`GgufFile::summary`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GgufSummary {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// `general.architecture` (`llama`, `gemma3`...), if present.
    pub architecture: Option<String>,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Total elements over all tensors (the parameter count).
    pub parameters: u64,
    /// Number of tensors.
    pub tensors: usize,
    /// `(ggml type name, tensor count, bytes)` per tensor type, most tensors first.
    pub tensor_types: Vec<(String, usize, u64)>,
    /// `<arch>.context_length`, if present.
    pub context_length: Option<u64>,
    /// `<arch>.embedding_length`, if present.
    pub embedding_length: Option<u64>,
    /// `<arch>.block_count` (layers), if present.
    pub block_count: Option<u64>,
    /// `<arch>.attention.head_count`, if present.
    pub head_count: Option<u64>,
    /// `<arch>.attention.head_count_kv`, if present.
    pub head_count_kv: Option<u64>,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`...), if present.
    pub tokenizer_model: Option<String>,
    /// Entries in `tokenizer.ggml.tokens`, if present.
    pub vocab_size: Option<usize>,
    /// `tokenizer.chat_template`, if present.
    pub chat_template: Option<String>,
    /// Metadata entries.
    pub metadata_entries: usize,
}

impl GgufFile {
    /// The model-level facts of this file (architecture, sizes, tokenizer), read from its
    /// metadata and tensor index. Keys that are absent are `None`.
    pub fn summary(&self) -> GgufSummary {
        let arch = self.get_str("general.architecture").map(str::to_string);
        let arch_u64 = |key: &str| {
            arch.as_ref()
                .and_then(|a| self.get(&format!("{a}.{key}")))
                .and_then(Value::as_u64)
        };
        let mut types: Vec<(String, usize, u64)> = Vec::new();
        for t in &self.tensors {
            let name = t.ty.name();
            match types.iter_mut().find(|(n, _, _)| n == name) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += t.size as u64;
                }
                None => types.push((name.to_string(), 1, t.size as u64)),
            }
        }
        types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        GgufSummary {
            version: self.version,
            name: self.get_str("general.name").map(str::to_string),
            parameters: self
                .tensors
                .iter()
                .fold(0u64, |a, t| a.saturating_add(t.elements())),
            tensors: self.tensors.len(),
            tensor_types: types,
            context_length: arch_u64("context_length"),
            embedding_length: arch_u64("embedding_length"),
            block_count: arch_u64("block_count"),
            head_count: arch_u64("attention.head_count"),
            head_count_kv: arch_u64("attention.head_count_kv"),
            tokenizer_model: self.get_str("tokenizer.ggml.model").map(str::to_string),
            vocab_size: self
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(<[Value]>::len),
            chat_template: self.get_str("tokenizer.chat_template").map(str::to_string),
            metadata_entries: self.metadata.len(),
            architecture: arch,
        }
    }
}

/// A tiny GGUF writer, for tests and tools that build small files in memory.
pub mod writer {
    use super::{Value, DEFAULT_ALIGNMENT, GGUF_MAGIC};
    use edgeai_core::quant::GgmlType;

    /// Builds a GGUF v3 file in memory.
    #[derive(Default, Debug)]
    pub struct GgufWriter {
        /// Metadata in order.
        pub metadata: Vec<(String, Value)>,
        /// `(name, dims, type, data)`.
        pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn type_id(v: &Value) -> u32 {
        match v {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    fn put_value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.push(*x as u8),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::String(s) => put_str(out, s),
            Value::Array(a) => {
                // Element type of an empty array: u8.
                let ety = a.first().map_or(0, type_id);
                out.extend_from_slice(&ety.to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for e in a {
                    put_value(out, e);
                }
            }
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }

    impl GgufWriter {
        /// An empty file.
        pub fn new() -> Self {
            Self::default()
        }

        /// A copy of `src` with every tensor dequantized to F32 (metadata unchanged): the
        /// exact-weights reference of cross-checks between engines.
        pub fn dequantized(src: &super::GgufFile) -> crate::Result<Self> {
            let mut w = Self::new();
            w.metadata = src.metadata().to_vec();
            for t in src.tensors() {
                let (rows, cols) = t.matrix_shape();
                let m = edgeai_core::quant::QMatrix::new(t.ty, rows, cols, src.tensor_data(t))?;
                let bytes = m
                    .dequantize()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                w.tensors
                    .push((t.name.clone(), t.dims.clone(), GgmlType::F32, bytes));
            }
            Ok(w)
        }

        /// Adds a metadata entry.
        pub fn kv(mut self, key: &str, v: Value) -> Self {
            self.metadata.push((key.to_string(), v));
            self
        }

        /// Adds a tensor (`data` must be its exact bytes).
        pub fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
            self.tensors
                .push((name.to_string(), dims.to_vec(), ty, data));
            self
        }

        /// Serializes the file.
        pub fn build(&self) -> Vec<u8> {
            let align = self
                .metadata
                .iter()
                .find(|(k, _)| k == "general.alignment")
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(DEFAULT_ALIGNMENT) as usize;
            let mut out = Vec::new();
            out.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
            for (k, v) in &self.metadata {
                put_str(&mut out, k);
                out.extend_from_slice(&type_id(v).to_le_bytes());
                put_value(&mut out, v);
            }
            let mut offset = 0usize;
            let mut offsets = Vec::new();
            for (name, dims, ty, data) in &self.tensors {
                put_str(&mut out, name);
                out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&ty.ggml_id().to_le_bytes());
                out.extend_from_slice(&(offset as u64).to_le_bytes());
                offsets.push(offset);
                offset = (offset + data.len()).div_ceil(align) * align;
            }
            let data_start = out.len().div_ceil(align) * align;
            out.resize(data_start, 0);
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                out.resize(data_start + off, 0);
                out.extend_from_slice(data);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::writer::GgufWriter;
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn sample() -> GgufWriter {
        GgufWriter::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("a.u8", Value::U8(7))
            .kv("a.i8", Value::I8(-7))
            .kv("a.u16", Value::U16(65535))
            .kv("a.i16", Value::I16(-300))
            .kv("a.u32", Value::U32(123_456))
            .kv("a.i32", Value::I32(-123_456))
            .kv("a.f32", Value::F32(1.5))
            .kv("a.bool", Value::Bool(true))
            .kv("a.u64", Value::U64(1 << 40))
            .kv("a.i64", Value::I64(-(1 << 40)))
            .kv("a.f64", Value::F64(-2.25))
            .kv(
                "a.strings",
                Value::Array(vec![
                    Value::String("hé".into()),
                    Value::String(String::new()),
                    Value::String("<|im_start|>".into()),
                ]),
            )
            .kv(
                "a.nested",
                Value::Array(vec![
                    Value::Array(vec![Value::String("x".into()), Value::String("y".into())]),
                    Value::Array(vec![Value::String("z".into())]),
                ]),
            )
            .tensor(
                "t0",
                &[4, 2],
                GgmlType::F32,
                f32_bytes(&[1., 2., 3., 4., 5., 6., 7., 8.]),
            )
            .tensor("t1", &[3], GgmlType::F32, f32_bytes(&[9., 10., 11.]))
    }

    #[test]
    fn roundtrip_all_value_types_and_tensors() {
        let f = GgufFile::from_bytes(sample().build()).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.get_str("general.architecture"), Some("llama"));
        assert_eq!(f.get("a.u8"), Some(&Value::U8(7)));
        assert_eq!(f.get("a.i8"), Some(&Value::I8(-7)));
        assert_eq!(f.get("a.u16"), Some(&Value::U16(65535)));
        assert_eq!(f.get("a.i16"), Some(&Value::I16(-300)));
        assert_eq!(f.require_u64("a.u32").unwrap(), 123_456);
        assert_eq!(f.get("a.i32").unwrap().as_i64(), Some(-123_456));
        assert_eq!(f.opt_f64("a.f32").unwrap(), Some(1.5));
        assert_eq!(f.get("a.bool").unwrap().as_bool(), Some(true));
        assert_eq!(f.require_u64("a.u64").unwrap(), 1 << 40);
        assert_eq!(f.get("a.i64").unwrap().as_i64(), Some(-(1 << 40)));
        assert_eq!(f.opt_f64("a.f64").unwrap(), Some(-2.25));
        assert_eq!(
            f.string_array("a.strings").unwrap(),
            vec!["hé", "", "<|im_start|>"]
        );
        let nested = f.get("a.nested").unwrap().as_array().unwrap();
        assert_eq!(nested.len(), 2);
        assert_eq!(nested[0].as_array().unwrap()[1].as_str(), Some("y"));
        assert!(f.require_u64("a.f32").is_err());
        assert!(f.require_u64("missing").is_err());
        assert_eq!(f.data_offset() % 32, 0);
        let t0 = f.tensor("t0").unwrap();
        assert_eq!(t0.matrix_shape(), (2, 4));
        let d: Vec<f32> = f
            .tensor_data(t0)
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(d, vec![1., 2., 3., 4., 5., 6., 7., 8.]);
        let t1 = f.tensor("t1").unwrap();
        assert_eq!(t1.offset % 32, 0);
        assert_eq!(&f.tensor_data(t1)[..4], &9f32.to_le_bytes());
    }

    #[test]
    fn custom_alignment() {
        let w = sample().kv("general.alignment", Value::U32(64));
        let f = GgufFile::from_bytes(w.build()).unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_offset() % 64, 0);
        assert_eq!(f.tensor("t1").unwrap().offset, 64);
        let bad = sample().kv("general.alignment", Value::U32(48)).build();
        assert!(GgufFile::from_bytes(bad).is_err());
    }

    fn expect_err(bytes: Vec<u8>, needle: &str) -> String {
        let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
        assert!(e.contains(needle), "error `{e}` lacks `{needle}`");
        e
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample().build();
        let header_end = GgufFile::from_bytes(b.clone()).unwrap().data_offset() as usize;
        for cut in 0..b.len() {
            let r = GgufFile::from_bytes(b[..cut].to_vec());
            assert!(r.is_err(), "truncation at {cut} of {} parsed", b.len());
            if cut < header_end.saturating_sub(32) {
                assert!(matches!(r, Err(Error::Gguf { .. })));
            }
        }
    }

    #[test]
    fn bad_magic_and_version() {
        let mut b = sample().build();
        b[0] = b'X';
        expect_err(b, "bad magic");
        let mut b = sample().build();
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        expect_err(b, "unsupported GGUF version 1");
        let mut b = sample().build();
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(GgufFile::from_bytes(b).unwrap().version(), 2);
    }

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        let mut b = sample().build();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = expect_err(b, "tensor count");
        assert!(e.contains("at byte 8"), "{e}");
        let mut b = sample().build();
        b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
        expect_err(b, "metadata count");
    }

    /// Position of the first occurrence of `needle` in `hay`.
    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    #[test]
    fn huge_string_and_array_lengths() {
        let b = sample().build();
        // The key "general.architecture" is preceded by its u64 length.
        let p = find(&b, b"general.architecture") - 8;
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        let e = expect_err(c, "string length");
        assert!(e.contains(&format!("at byte {p}")), "{e}");
        // The array "a.strings": key, type (u32 = 9), element type (u32 = 8), length (u64).
        let p = find(&b, b"a.strings") + "a.strings".len() + 8;
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        expect_err(c, "array length");
    }

    #[test]
    fn unknown_types() {
        let b = sample().build();
        let p = find(&b, b"a.u8") + 4;
        let mut c = b.clone();
        c[p..p + 4].copy_from_slice(&99u32.to_le_bytes());
        expect_err(c, "unknown metadata value type 99");
        // Tensor type of t1: name, n_dims (1), dim (3), then type.
        let p = find(&b, b"t1") + 2 + 4 + 8;
        let mut c = b.clone();
        c[p..p + 4].copy_from_slice(&77u32.to_le_bytes());
        expect_err(c, "unknown or unsupported type id 77");
    }

    #[test]
    fn tensor_bounds() {
        let b = sample().build();
        let tinfo = find(&b, b"t1");
        // Offset field of t1.
        let p = tinfo + 2 + 4 + 8 + 4;
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
        expect_err(c, "outside the file");
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        expect_err(c, "outside the file");
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&3u64.to_le_bytes());
        expect_err(c, "not aligned");
        // Dims of t0 whose product overflows.
        let p = find(&b, b"t0") + 2 + 4;
        let mut c = b.clone();
        c[p..p + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        c[p + 8..p + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        expect_err(c, "overflow or exceed");
        // Too many dims.
        let p = find(&b, b"t0") + 2;
        let mut c = b.clone();
        c[p..p + 4].copy_from_slice(&9u32.to_le_bytes());
        expect_err(c, "9 dimensions");
    }

    #[test]
    fn bad_bool() {
        let b = sample().build();
        let p = find(&b, b"a.bool") + 6 + 4;
        let mut c = b.clone();
        c[p] = 5;
        expect_err(c, "bool value 5");
    }

    #[test]
    fn summary_reads_arch_keys_tokens_and_type_histogram() {
        let bytes = GgufWriter::new()
            .kv("general.architecture", Value::String("llama".into()))
            .kv("general.name", Value::String("tiny".into()))
            .kv("llama.context_length", Value::U32(2048))
            .kv("llama.block_count", Value::U32(2))
            .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
            )
            .kv("tokenizer.chat_template", Value::String("{{ x }}".into()))
            .tensor("a", &[4, 2], GgmlType::F32, f32_bytes(&[0.0; 8]))
            .tensor("b", &[3], GgmlType::F32, f32_bytes(&[0.0; 3]))
            .tensor("c", &[32], GgmlType::Q8_0, vec![0; 34])
            .build();
        let s = GgufFile::from_bytes(bytes).unwrap().summary();
        assert_eq!(s.architecture.as_deref(), Some("llama"));
        assert_eq!(s.name.as_deref(), Some("tiny"));
        assert_eq!(s.context_length, Some(2048));
        assert_eq!(s.block_count, Some(2));
        assert_eq!(s.embedding_length, None);
        assert_eq!(s.vocab_size, Some(2));
        assert_eq!(s.tokenizer_model.as_deref(), Some("gpt2"));
        assert_eq!(s.chat_template.as_deref(), Some("{{ x }}"));
        assert_eq!(s.parameters, 8 + 3 + 32);
        assert_eq!(s.tensors, 3);
        assert_eq!(
            s.tensor_types,
            vec![("F32".to_string(), 2, 44), ("Q8_0".to_string(), 1, 34)]
        );
    }
}
