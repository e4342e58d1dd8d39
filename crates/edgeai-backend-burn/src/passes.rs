//! Load-time rewrites of the parsed graph (with [`OptLevel::Basic`] and above): a
//! `BatchNormalization` after a constant-weight `Conv` folds into it, and constant `Gemm`
//! weights with `transB = 1` are stored transposed.
//!
//! [`OptLevel::Basic`]: edgeai_core::OptLevel::Basic

use std::collections::HashMap;

use crate::parse::{Host, HostData, Node};

/// Folds `BatchNormalization(Conv(x, W, b))` into `Conv(x, W', b')` when the weights and
/// the normalisation parameters are constants and the convolution feeds nothing else.
pub(crate) fn fuse_conv_bn(
    nodes: Vec<Node>,
    hosts: &mut Vec<Option<Host>>,
    keep: &[usize],
) -> Vec<Node> {
    let mut readers = vec![0usize; hosts.len()];
    for n in &nodes {
        for s in n.inputs.iter().flatten() {
            readers[*s] += 1;
        }
    }
    let producer: HashMap<usize, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |&s| (s, i)))
        .collect();
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let f32s = |hosts: &[Option<Host>], s: Option<usize>| -> Option<(Vec<usize>, Vec<f32>)> {
        let h = hosts.get(s?)?.as_ref()?;
        match &h.data {
            HostData::F32(v) => Some((h.shape.clone(), v.clone())),
            _ => None,
        }
    };
    for i in 0..nodes.len() {
        let Some(bn) = nodes[i].as_ref() else {
            continue;
        };
        if bn.op != "BatchNormalization"
            || bn.outputs.len() != 1
            || bn.inputs.len() != 5
            || bn.attrs.int("training_mode", 0) != 0
        {
            continue;
        }
        let Some(x) = bn.inputs[0] else { continue };
        let Some(&ci) = producer.get(&x) else {
            continue;
        };
        if readers[x] != 1 || keep.contains(&x) {
            continue;
        }
        let Some(conv) = nodes[ci].as_ref() else {
            continue;
        };
        if conv.op != "Conv" || conv.inputs.len() < 2 {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = (1..5)
            .map(|k| f32s(hosts, bn.inputs[k]).map(|(_, v)| v))
            .collect();
        let Some(p) = params else { continue };
        let Some((wshape, mut w)) = f32s(hosts, conv.inputs[1]) else {
            continue;
        };
        let m = wshape.first().copied().unwrap_or(0);
        if m == 0 || w.is_empty() || p.iter().any(|v| v.len() != m) || w.len() % m != 0 {
            continue;
        }
        let bias = match conv.inputs.get(2).copied().flatten() {
            Some(s) => match f32s(hosts, Some(s)) {
                Some((_, b)) if b.len() == m => b,
                _ => continue,
            },
            None => vec![0.0; m],
        };
        let eps = bn.attrs.float("epsilon", 1e-5);
        let per = w.len() / m;
        let mut nb = vec![0.0f32; m];
        for (o, (nbo, wo)) in nb.iter_mut().zip(w.chunks_mut(per)).enumerate() {
            let a = p[0][o] / (p[3][o] + eps).sqrt();
            for v in wo {
                *v *= a;
            }
            *nbo = (bias[o] - p[2][o]) * a + p[1][o];
        }
        // Fused weights in fresh slots: the originals may be read elsewhere; unread
        // constants are dropped after folding.
        let ws = hosts.len();
        hosts.push(Some(Host::floats(wshape, w)));
        let bias_slot = hosts.len();
        hosts.push(Some(Host::floats(vec![m], nb)));
        let out = bn.outputs[0];
        let mut fused = conv.clone();
        fused.inputs = vec![conv.inputs[0], Some(ws), Some(bias_slot)];
        fused.outputs = vec![out];
        nodes[ci] = Some(fused);
        nodes[i] = None;
    }
    nodes.into_iter().flatten().collect()
}

/// Stores a constant `Gemm` weight with `transB = 1` transposed once, so that runs multiply
/// by a contiguous matrix instead of a transposed view.
pub(crate) fn pretranspose_gemm(nodes: &mut [Node], hosts: &mut Vec<Option<Host>>) {
    for n in nodes.iter_mut() {
        if n.op != "Gemm" || n.attrs.int("transB", 0) == 0 {
            continue;
        }
        let Some(Some(ws)) = n.inputs.get(1).copied() else {
            continue;
        };
        let Some(Some(h)) = hosts.get(ws) else {
            continue;
        };
        let (HostData::F32(w), &[r, c]) = (&h.data, &h.shape[..]) else {
            continue;
        };
        let mut t = vec![0.0f32; w.len()];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = w[i * c + j];
            }
        }
        let slot = hosts.len();
        hosts.push(Some(Host::floats(vec![c, r], t)));
        n.inputs[1] = Some(slot);
        n.attrs.set_int("transB", 0);
    }
}
