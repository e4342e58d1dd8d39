//! A summary of an ONNX model read straight from its protobuf bytes, without a backend.
//!
//! [`OnnxInfo::parse`] walks the protobuf wire format (no code generation, no dependency)
//! and extracts what a user inspecting a model wants to see: IR version, producer, opset
//! imports, graph inputs and outputs (name, element type, dimensions including symbolic
//! ones), the initializer count, and a histogram of node operator types, subgraphs of
//! `If` / `Loop` / `Scan` nodes included. Graph inputs that are also initializers (as
//! exporters for IR < 4 write them) are not listed as inputs.
//!
//! A truncated or corrupt file is an [`Error::InvalidModel`], never a panic; subgraph nesting
//! deeper than 64 levels is refused.
//!
//! ```no_run
//! let info = edgeai_core::onnx_info::OnnxInfo::read("models/face/sface.onnx")?;
//! for i in &info.inputs {
//!     println!("{} {} {}", i.name, i.elem_type_name(), i.shape_string());
//! }
//! # Ok::<(), edgeai_core::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use crate::{DType, Dim, Error, Result};

/// Subgraphs nested deeper than this are refused (a guard against stack exhaustion).
const MAX_DEPTH: usize = 64;

/// What [`OnnxInfo::parse`] found in a model.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct OnnxInfo {
    /// The ONNX IR version.
    pub ir_version: i64,
    /// The exporting tool's name (`pytorch`, `tf2onnx`...), possibly empty.
    pub producer_name: String,
    /// The exporting tool's version, possibly empty.
    pub producer_version: String,
    /// `(domain, version)` opset imports; the default ONNX domain is written `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
    /// The main graph's name.
    pub graph_name: String,
    /// Graph inputs that are not initializers, in file order.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs, in file order.
    pub outputs: Vec<ValueInfo>,
    /// Initializers (weights) in the main graph.
    pub initializers: usize,
    /// Nodes in the main graph and all subgraphs.
    pub nodes: usize,
    /// Subgraphs (node attributes of graph type) found.
    pub subgraphs: usize,
    /// Operator types and how often each occurs, most frequent first (ties by name). Ops of
    /// a domain other than the default one are written `domain:Op`.
    pub op_histogram: Vec<(String, usize)>,
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// The tensor's name.
    pub name: String,
    /// The ONNX `TensorProto.DataType` code (1 = FLOAT...), 0 when not a tensor or unset.
    pub elem_type: i32,
    /// The dimensions; `None` when the file declares no shape. A dimension with neither a
    /// value nor a name is `Symbolic("?")`.
    pub dims: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The element type's ONNX name (`float`, `int64`...).
    pub fn elem_type_name(&self) -> &'static str {
        elem_type_name(self.elem_type)
    }

    /// The matching [`DType`], if edgeai has one.
    pub fn dtype(&self) -> Option<DType> {
        elem_type_dtype(self.elem_type)
    }

    /// The shape as text, e.g. `[batch, 3, 112, 112]`, or `[?]` when undeclared.
    pub fn shape_string(&self) -> String {
        match &self.dims {
            None => "[?]".into(),
            Some(d) => format!(
                "[{}]",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The ONNX name of a `TensorProto.DataType` code.
pub fn elem_type_name(code: i32) -> &'static str {
    match code {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        0 => "undefined",
        _ => "unknown",
    }
}

/// The [`DType`] for a `TensorProto.DataType` code, if edgeai has one.
pub fn elem_type_dtype(code: i32) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        6 => DType::I32,
        7 => DType::I64,
        10 => DType::F16,
        16 => DType::BF16,
        _ => return None,
    })
}

impl OnnxInfo {
    /// Reads and parses an ONNX file. Errors name the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse_with_origin(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of an ONNX model.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::parse_with_origin(bytes, &format!("<{} bytes>", bytes.len()))
    }

    fn parse_with_origin(bytes: &[u8], origin: &str) -> Result<Self> {
        parse_model(bytes).map_err(|reason| Error::InvalidModel {
            origin: origin.to_string(),
            reason,
        })
    }
}

type Res<T> = std::result::Result<T, String>;

/// A protobuf field value.
enum Val<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Res<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("truncated protobuf (in a varint)")?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("protobuf varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("protobuf varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> Res<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated protobuf: a field claims {n} bytes, {} remain",
                    self.buf.len() - self.pos
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Res<Option<(u64, Val<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err("protobuf field number 0".into());
        }
        let v = match wire {
            0 => Val::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Val::Fixed
            }
            2 => {
                let n = self.varint()?;
                Val::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Val::Fixed
            }
            w => {
                return Err(format!(
                    "unsupported protobuf wire type {w} (field {field})"
                ))
            }
        };
        Ok(Some((field, v)))
    }
}

fn string(v: &Val<'_>, what: &str) -> Res<String> {
    match v {
        Val::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(format!("{what} is not a string")),
    }
}

fn bytes<'a>(v: &Val<'a>, what: &str) -> Res<&'a [u8]> {
    match v {
        Val::Bytes(b) => Ok(b),
        _ => Err(format!("{what} is not a message")),
    }
}

fn int(v: &Val<'_>, what: &str) -> Res<i64> {
    match v {
        Val::Varint(n) => Ok(*n as i64),
        _ => Err(format!("{what} is not an integer")),
    }
}

fn parse_model(buf: &[u8]) -> Res<OnnxInfo> {
    if buf.is_empty() {
        return Err("empty file".into());
    }
    let mut info = OnnxInfo::default();
    let mut graph = None;
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        match field {
            1 => info.ir_version = int(&v, "ir_version")?,
            2 => info.producer_name = string(&v, "producer_name")?,
            3 => info.producer_version = string(&v, "producer_version")?,
            7 => graph = Some(bytes(&v, "graph")?),
            8 => info.opsets.push(opset(bytes(&v, "opset_import")?)?),
            _ => {}
        }
    }
    let graph = graph.ok_or("no graph (not an ONNX model?)")?;
    let mut hist = HashMap::new();
    let mut initializer_names = Vec::new();
    let mut inputs = Vec::new();
    let mut g = Fields::new(graph);
    while let Some((field, v)) = g.next_field()? {
        match field {
            1 => node(bytes(&v, "node")?, &mut hist, &mut info, 0)?,
            2 => info.graph_name = string(&v, "graph name")?,
            5 => {
                info.initializers += 1;
                initializer_names.push(tensor_name(bytes(&v, "initializer")?)?);
            }
            11 => inputs.push(value_info(bytes(&v, "input")?)?),
            12 => info.outputs.push(value_info(bytes(&v, "output")?)?),
            _ => {}
        }
    }
    let inits: std::collections::HashSet<&str> =
        initializer_names.iter().map(String::as_str).collect();
    info.inputs = inputs
        .into_iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let mut h: Vec<(String, usize)> = hist.into_iter().collect();
    h.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    info.op_histogram = h;
    Ok(info)
}

fn opset(buf: &[u8]) -> Res<(String, i64)> {
    let (mut domain, mut version) = (String::new(), 0);
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        match field {
            1 => domain = string(&v, "opset domain")?,
            2 => version = int(&v, "opset version")?,
            _ => {}
        }
    }
    if domain.is_empty() {
        domain = "ai.onnx".into();
    }
    Ok((domain, version))
}

fn tensor_name(buf: &[u8]) -> Res<String> {
    let mut f = Fields::new(buf);
    let mut name = String::new();
    while let Some((field, v)) = f.next_field()? {
        if field == 8 {
            name = string(&v, "initializer name")?;
        }
    }
    Ok(name)
}

fn node(
    buf: &[u8],
    hist: &mut HashMap<String, usize>,
    info: &mut OnnxInfo,
    depth: usize,
) -> Res<()> {
    let (mut op, mut domain) = (String::new(), String::new());
    let mut attrs = Vec::new();
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        match field {
            4 => op = string(&v, "op_type")?,
            5 => attrs.push(bytes(&v, "attribute")?),
            7 => domain = string(&v, "node domain")?,
            _ => {}
        }
    }
    let key = if domain.is_empty() || domain == "ai.onnx" {
        op
    } else {
        format!("{domain}:{op}")
    };
    *hist.entry(key).or_default() += 1;
    info.nodes += 1;
    for a in attrs {
        let mut f = Fields::new(a);
        while let Some((field, v)) = f.next_field()? {
            // AttributeProto.g (6) and .graphs (11) hold subgraphs.
            if field == 6 || field == 11 {
                if depth + 1 > MAX_DEPTH {
                    return Err(format!("subgraphs nested deeper than {MAX_DEPTH} levels"));
                }
                info.subgraphs += 1;
                subgraph(bytes(&v, "subgraph")?, hist, info, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn subgraph(
    buf: &[u8],
    hist: &mut HashMap<String, usize>,
    info: &mut OnnxInfo,
    depth: usize,
) -> Res<()> {
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        if field == 1 {
            node(bytes(&v, "node")?, hist, info, depth)?;
        }
    }
    Ok(())
}

fn value_info(buf: &[u8]) -> Res<ValueInfo> {
    let mut vi = ValueInfo {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        match field {
            1 => vi.name = string(&v, "value name")?,
            2 => {
                // TypeProto.tensor_type (1) -> elem_type (1), shape (2) -> dim (1)*
                let mut t = Fields::new(bytes(&v, "type")?);
                while let Some((tf, tv)) = t.next_field()? {
                    if tf != 1 {
                        continue;
                    }
                    let mut tt = Fields::new(bytes(&tv, "tensor_type")?);
                    while let Some((ttf, ttv)) = tt.next_field()? {
                        match ttf {
                            1 => vi.elem_type = int(&ttv, "elem_type")? as i32,
                            2 => vi.dims = Some(shape(bytes(&ttv, "shape")?)?),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}

fn shape(buf: &[u8]) -> Res<Vec<Dim>> {
    let mut dims = Vec::new();
    let mut f = Fields::new(buf);
    while let Some((field, v)) = f.next_field()? {
        if field != 1 {
            continue;
        }
        let mut d = Dim::Symbolic("?".into());
        let mut df = Fields::new(bytes(&v, "dim")?);
        while let Some((k, dv)) = df.next_field()? {
            match k {
                1 => {
                    let n = int(&dv, "dim_value")?;
                    d = match usize::try_from(n) {
                        Ok(n) => Dim::Fixed(n),
                        Err(_) => Dim::Symbolic("?".into()),
                    };
                }
                2 => {
                    let s = string(&dv, "dim_param")?;
                    d = Dim::Symbolic(if s.is_empty() { "?".into() } else { s });
                }
                _ => {}
            }
        }
        dims.push(d);
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny protobuf writer for building test models.
    #[derive(Default)]
    struct W(Vec<u8>);
    impl W {
        fn varint(mut self, mut v: u64) -> Self {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(b);
                    return self;
                }
                self.0.push(b | 0x80);
            }
        }
        fn int(self, field: u64, v: i64) -> Self {
            self.varint(field << 3).varint(v as u64)
        }
        fn bytes(self, field: u64, b: &[u8]) -> Self {
            let mut s = self.varint((field << 3) | 2).varint(b.len() as u64);
            s.0.extend_from_slice(b);
            s
        }
        fn str(self, field: u64, s: &str) -> Self {
            self.bytes(field, s.as_bytes())
        }
        fn msg(self, field: u64, m: W) -> Self {
            self.bytes(field, &m.0)
        }
    }

    fn value(name: &str, elem: i64, dims: &[Result<i64, &str>]) -> W {
        let mut shape = W::default();
        for d in dims {
            shape = shape.msg(
                1,
                match d {
                    Ok(n) => W::default().int(1, *n),
                    Err(s) => W::default().str(2, s),
                },
            );
        }
        let tensor = W::default().int(1, elem).msg(2, shape);
        W::default()
            .str(1, name)
            .msg(2, W::default().msg(1, tensor))
    }

    fn node(op: &str) -> W {
        W::default().str(1, "x").str(2, "y").str(4, op)
    }

    fn model() -> Vec<u8> {
        let body = W::default().msg(1, node("Relu")).msg(1, node("Add"));
        let ifnode = node("If").msg(5, W::default().str(1, "then_branch").msg(6, body));
        let graph = W::default()
            .msg(1, node("Conv"))
            .msg(1, node("Relu"))
            .msg(1, ifnode)
            .msg(1, node("FusedThing").str(7, "com.microsoft"))
            .str(2, "main")
            .msg(5, W::default().str(8, "weight").bytes(9, &[0; 8]))
            .msg(
                11,
                value("data", 1, &[Err("batch"), Ok(3), Ok(224), Ok(224)]),
            )
            .msg(11, value("weight", 1, &[Ok(2)]))
            .msg(12, value("prob", 7, &[Err("batch"), Ok(-1)]));
        W::default()
            .int(1, 8)
            .str(2, "pytorch")
            .str(3, "2.1")
            .msg(7, graph)
            .msg(8, W::default().int(2, 17))
            .msg(8, W::default().str(1, "com.microsoft").int(2, 1))
            .0
    }

    #[test]
    fn summary_of_a_built_model() {
        let info = OnnxInfo::parse(&model()).unwrap();
        assert_eq!(info.ir_version, 8);
        assert_eq!(info.producer_name, "pytorch");
        assert_eq!(info.producer_version, "2.1");
        assert_eq!(
            info.opsets,
            vec![("ai.onnx".into(), 17), ("com.microsoft".into(), 1)]
        );
        assert_eq!(info.graph_name, "main");
        assert_eq!(info.initializers, 1);
        assert_eq!(info.inputs.len(), 1, "the initializer input is not listed");
        assert_eq!(info.inputs[0].name, "data");
        assert_eq!(info.inputs[0].dtype(), Some(DType::F32));
        assert_eq!(info.inputs[0].shape_string(), "[batch, 3, 224, 224]");
        assert_eq!(info.outputs[0].elem_type_name(), "int64");
        assert_eq!(info.outputs[0].shape_string(), "[batch, ?]");
        assert_eq!(info.nodes, 6);
        assert_eq!(info.subgraphs, 1);
        assert_eq!(
            info.op_histogram,
            vec![
                ("Relu".to_string(), 2),
                ("Add".to_string(), 1),
                ("Conv".to_string(), 1),
                ("If".to_string(), 1),
                ("com.microsoft:FusedThing".to_string(), 1),
            ]
        );
    }

    #[test]
    fn truncations_and_garbage_are_errors() {
        let m = model();
        for n in 0..m.len() {
            // A prefix may happen to end on a field boundary; it must never panic.
            if let Ok(i) = OnnxInfo::parse(&m[..n]) {
                assert!(i.nodes <= 6);
            }
        }
        assert!(OnnxInfo::parse(&m[..m.len() - 1]).is_err());
        let e = OnnxInfo::parse(b"").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = OnnxInfo::parse(b"GGUF\x03\0\0\0").unwrap_err().to_string();
        assert!(e.starts_with("invalid model <8 bytes>"), "{e}");
        let e = OnnxInfo::parse(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let mut long = vec![0x08];
        long.extend([0xff; 11]);
        let e = OnnxInfo::parse(&long).unwrap_err().to_string();
        assert!(e.contains("varint"), "{e}");
        let e = OnnxInfo::parse(&[0x08; 12]).unwrap_err().to_string();
        assert!(e.contains("no graph"), "{e}");
        for i in 0..m.len() {
            let mut c = m.clone();
            c[i] ^= 0xa5;
            let _ = OnnxInfo::parse(&c);
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut g = W::default().msg(1, node("Relu"));
        for _ in 0..(MAX_DEPTH + 2) {
            let n = node("If").msg(5, W::default().msg(6, g));
            g = W::default().msg(1, n);
        }
        let m = W::default().msg(7, g).0;
        let e = OnnxInfo::parse(&m).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn fetched_sface_is_summarised() {
        let Some(p) = crate::paths::model_path("face/sface.onnx") else {
            eprintln!("skipping: face/sface.onnx not fetched (run scripts/fetch-models)");
            return;
        };
        let info = OnnxInfo::read(&p).unwrap();
        assert_eq!(info.inputs.len(), 1);
        assert_eq!(info.inputs[0].dtype(), Some(DType::F32));
        assert_eq!(info.inputs[0].dims.as_ref().map(|d| d.len()), Some(4));
        assert_eq!(info.outputs.len(), 1);
        assert!(info.initializers > 10);
        assert!(info.op_histogram.iter().any(|(op, _)| op == "Conv"));
        assert_eq!(
            info.op_histogram.iter().map(|(_, n)| n).sum::<usize>(),
            info.nodes
        );
        assert!(info.opsets.iter().any(|(d, v)| d == "ai.onnx" && *v > 0));
    }
}
