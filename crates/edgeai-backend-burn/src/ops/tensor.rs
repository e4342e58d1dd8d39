//! Operators that make or convert whole values: `Constant`, `ConstantOfShape`, `Identity`,
//! `Dropout` (inference: the identity, and an all-true mask) and `Cast`.

use edgeai_onnx::proto::dt;

use super::*;
use crate::error::bail;
use crate::parse::host_from_proto;

pub(super) fn identity<B: Backend>(_: &Node, cx: &mut Cx<B>) -> Out<B> {
    one(cx.take(0)?)
}

pub(super) fn dropout<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let mut out = vec![x.clone()];
    if node.outputs.len() > 1 {
        let s = val_shape(&x);
        let n = numel(&s)?;
        out.push(host_val(Host::ints(s, vec![1; n])));
    }
    Ok(out)
}

pub(super) fn constant<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let h = if let Some(t) = a.tensor("value") {
        host_from_proto(t)?
    } else if a.has("value_float") {
        Host::floats(vec![], vec![a.float("value_float", 0.0)])
    } else if let Some(v) = a.floats("value_floats").filter(|_| a.has("value_floats")) {
        Host::floats(vec![v.len()], v)
    } else if a.has("value_int") {
        Host::ints(vec![], vec![a.int("value_int", 0)])
    } else if let Some(v) = a.ints("value_ints") {
        Host::ints(vec![v.len()], v)
    } else {
        bail!(Unsupported, "no supported value attribute");
    };
    one(settle::<B>(h, cx.dev))
}

pub(super) fn constant_of_shape<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let s = cx.host(0)?.to_i64();
    let shape = s
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| E::Attr(format!("shape {s:?}"))))
        .collect::<R<Vec<_>>>()?;
    check_size(&shape)?;
    let n = numel(&shape)?;
    let fill = match node.attrs.tensor("value") {
        Some(t) => host_from_proto(t)?,
        None => Host::floats(vec![1], vec![0.0]),
    };
    let h = match &fill.data {
        HostData::F32(v) => Host::floats(shape, vec![v.first().copied().unwrap_or(0.0); n]),
        HostData::I64(v) => Host::ints(shape, vec![v.first().copied().unwrap_or(0); n]),
    };
    one(settle::<B>(h, cx.dev))
}

pub(super) fn cast<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let v = cx.take(0)?;
    let to = node.attrs.int("to", dt::FLOAT as i64) as i32;
    one(match to {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16 => Val::F(to_f::<B>(v, cx.dev)),
        dt::BOOL => {
            let h = to_host::<B>(v)?;
            let d = match &h.data {
                HostData::F32(x) => x.iter().map(|&f| (f != 0.0) as i64).collect(),
                HostData::I64(x) => x.iter().map(|&i| (i != 0) as i64).collect(),
            };
            host_val(Host::ints(h.shape.clone(), d))
        }
        dt::INT8
        | dt::UINT8
        | dt::INT16
        | dt::UINT16
        | dt::INT32
        | dt::UINT32
        | dt::INT64
        | dt::UINT64 => {
            let h = to_host::<B>(v)?;
            host_val(Host::ints(h.shape.clone(), h.to_i64()))
        }
        other => bail!(DType, "cast to ONNX type {other}"),
    })
}
