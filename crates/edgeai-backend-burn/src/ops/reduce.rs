//! Reductions over axes: `ReduceMean`, `ReduceSum`, `ReduceMax`.

use super::*;

pub(super) fn reduce<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.float(0)?;
    let from_input = (node.op == "ReduceSum" && cx.opset >= 13) || cx.opset >= 18;
    let axes = if from_input {
        cx.opt_host(1)?.map(|h| h.to_i64())
    } else {
        node.attrs.ints("axes")
    };
    let xs = shp::<B>(&x);
    let keep = node.attrs.int("keepdims", 1) != 0;
    let mut axes = match axes {
        Some(a) if !a.is_empty() => norm_axes(&a, xs.len())?,
        _ if node.attrs.int("noop_with_empty_axes", 0) != 0 => return one_f(x),
        _ => (0..xs.len()).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    let mut y = x;
    for &ax in &axes {
        y = match node.op.as_str() {
            "ReduceMean" => B::float_mean_dim(y, ax),
            "ReduceSum" => B::float_sum_dim(y, ax),
            _ => B::float_max_dim(y, ax),
        };
    }
    if keep {
        return one_f(y);
    }
    let out: Vec<usize> = xs
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    one_f(reshape::<B>(y, &out))
}
