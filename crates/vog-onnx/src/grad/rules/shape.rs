//! Rules for ops that move data without arithmetic: reshapes (`Flatten`, `Reshape`, `Squeeze`,
//! `Unsqueeze`), `Transpose`, `Concat`, `Split`, `Slice`, `Gather`, `GatherElements`, `Tile`,
//! `Pad`, `Expand`, `CumSum`, `Trilu`, `DepthToSpace` and `SpaceToDepth`. Where no inverse op
//! exists, the gradient is scattered back through the op applied to the input's element indices
//! ([`Builder::scatter_adjoint`]).

use super::context::{one_input, Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_i, attr_ints, attr_s, make_i, make_ints, make_s};

/// `Flatten`, `Reshape`, `Squeeze`, `Unsqueeze`: `g` reshaped to the input's shape.
pub(super) fn reshape(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.reshape_like(&c.g, c.x(0)))
}

/// `Transpose`: `g` transposed by the inverse permutation (a reversal when `perm` is absent).
pub(super) fn transpose(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let attrs = match attr_ints(c.n, "perm") {
        Some(p) if !p.is_empty() => {
            let mut inv = vec![0i64; p.len()];
            for (i, &v) in p.iter().enumerate() {
                *inv.get_mut(v as usize).ok_or(())? = i as i64;
            }
            vec![make_ints("perm", inv)]
        }
        _ => vec![],
    };
    one_input(b.op("Transpose", &[&c.g], attrs))
}

/// `Concat`: `g` split along `axis` at the inputs' sizes.
pub(super) fn concat(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let n = c.n;
    let axis = attr_i(n, "axis").ok_or(())?;
    let ax = b.i64s(&[axis]);
    let sizes: Vec<String> = (0..n.input.len())
        .map(|i| {
            let s = b.shape(c.x(i));
            b.op("Gather", &[&s, &ax], vec![make_i("axis", 0)])
        })
        .collect();
    let refs: Vec<&str> = sizes.iter().map(String::as_str).collect();
    let split = b.op("Concat", &refs, vec![make_i("axis", 0)]);
    let parts = b.ops(
        "Split",
        &[&c.g, &split],
        n.input.len(),
        vec![make_i("axis", axis)],
    );
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| c.need(i).then_some(p))
        .collect())
}

/// `Split`: the outputs' gradients concatenated along `axis`, zeros for outputs that got none.
pub(super) fn split(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let axis = attr_i(c.n, "axis").unwrap_or(0);
    let parts: Vec<String> =
        c.n.output
            .iter()
            .zip(c.gy)
            .map(|(o, g)| match g {
                Some(g) => g.clone(),
                None => b.zeros_like(o),
            })
            .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    one_input(b.op("Concat", &refs, vec![make_i("axis", axis)]))
}

/// `Slice`: `g` scattered back to the sliced positions.
pub(super) fn slice(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let inputs: Vec<String> = c.n.input.iter().skip(1).cloned().collect();
    one_input(b.scatter_adjoint(&c.g, c.x(0), |b, iota| {
        let mut ins: Vec<&str> = vec![iota];
        ins.extend(inputs.iter().map(String::as_str));
        b.op("Slice", &ins, vec![])
    }))
}

/// `Gather`, `GatherElements`: `g` scatter-added back to the gathered positions.
pub(super) fn gather(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let axis = attr_i(c.n, "axis").unwrap_or(0);
    let op = c.n.op_type.clone();
    let indices = c.x(1).to_string();
    one_input(b.scatter_adjoint(&c.g, c.x(0), |b, iota| {
        b.op(&op, &[iota, &indices], vec![make_i("axis", axis)])
    }))
}

/// `ReverseSequence`: a permutation that undoes itself, so `g` is reversed the same way.
pub(super) fn reverse_sequence(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.op("ReverseSequence", &[&c.g, c.x(1)], c.n.attribute.clone()))
}

/// `Tile`: `g` scatter-added over the copies.
pub(super) fn tile(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let reps = c.x(1).to_string();
    one_input(b.scatter_adjoint(&c.g, c.x(0), |b, iota| b.op("Tile", &[iota, &reps], vec![])))
}

/// `Pad`: constant padding is cropped off by a negative pad; other modes scatter-add back.
pub(super) fn pad(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let g = &c.g;
    let mode = attr_s(c.n, "mode").unwrap_or_else(|| "constant".into());
    let axes = c.x(3).to_string();
    if mode == "constant" {
        let neg = b.op("Neg", &[c.x(1)], vec![]);
        let mut ins = vec![g.as_str(), neg.as_str()];
        if !axes.is_empty() {
            ins.extend(["", axes.as_str()]);
        }
        let ins: Vec<String> = ins.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        one_input(b.op("Pad", &refs, vec![make_s("mode", "constant")]))
    } else {
        let pads = c.x(1).to_string();
        one_input(b.scatter_adjoint(g, c.x(0), |b, iota| {
            let mut ins = vec![iota, pads.as_str()];
            if !axes.is_empty() {
                ins.extend(["", axes.as_str()]);
            }
            b.op("Pad", &ins, vec![make_s("mode", &mode)])
        }))
    }
}

/// `Expand`: `g` summed over the expanded axes.
pub(super) fn expand(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    one_input(b.unb_like(&c.g, c.y(), c.x(0)))
}

/// `CumSum` along `axis`: the gradient is the cumulative sum of `g` in the other direction, with
/// the same `exclusive` (each output sums the inputs before it, so each input reaches the
/// outputs after it).
pub(super) fn cum_sum(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let reverse = attr_i(c.n, "reverse").unwrap_or(0);
    let exclusive = attr_i(c.n, "exclusive").unwrap_or(0);
    one_input(b.op(
        "CumSum",
        &[&c.g, c.x(1)],
        vec![
            make_i("exclusive", exclusive),
            make_i("reverse", 1 - reverse),
        ],
    ))
}

/// `Trilu`: the kept triangle passes the gradient, the rest gets none: the same `Trilu` of `g`.
pub(super) fn trilu(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let k = c.x(1);
    let inputs: Vec<&str> = if k.is_empty() {
        vec![&c.g]
    } else {
        vec![&c.g, k]
    };
    one_input(b.op("Trilu", &inputs, c.n.attribute.clone()))
}

/// `DepthToSpace`: a permutation, undone by `SpaceToDepth` of `g` for the `DCR` mode. In `CRD`
/// mode the input's channels run (channel, row offset, column offset) where `SpaceToDepth`
/// gives (row offset, column offset, channel): its result is reshaped to
/// `[N, b, b, C/b², H, W]` and those axes put back in `CRD` order.
pub(super) fn depth_to_space(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let block = attr_i(c.n, "blocksize").filter(|&v| v > 0).ok_or(())?;
    let blocks = b.op("SpaceToDepth", &[&c.g], vec![make_i("blocksize", block)]);
    match attr_s(c.n, "mode").as_deref().unwrap_or("DCR") {
        "DCR" => one_input(blocks),
        "CRD" => {
            let shape = b.shape(&blocks);
            let part = |b: &mut Builder<'_>, from: i64, to: i64| {
                let (s, e) = (b.i64s(&[from]), b.i64s(&[to]));
                b.op("Slice", &[&shape, &s, &e], vec![])
            };
            let (n, channels, spatial) = (part(b, 0, 1), part(b, 1, 2), part(b, 2, 4));
            let squared = b.i64s(&[block * block]);
            let per_block = b.op("Div", &[&channels, &squared], vec![]);
            let offsets = b.i64s(&[block, block]);
            let six = b.op(
                "Concat",
                &[&n, &offsets, &per_block, &spatial],
                vec![make_i("axis", 0)],
            );
            let split = b.op("Reshape", &[&blocks, &six], vec![]);
            let crd = b.op(
                "Transpose",
                &[&split],
                vec![make_ints("perm", vec![0, 3, 1, 2, 4, 5])],
            );
            one_input(b.reshape_like(&crd, c.x(0)))
        }
        _ => Err(()),
    }
}

/// `SpaceToDepth`: undone by `DepthToSpace` of `g` in `DCR` mode (the order it writes).
pub(super) fn space_to_depth(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let block = attr_i(c.n, "blocksize").filter(|&v| v > 0).ok_or(())?;
    one_input(b.op(
        "DepthToSpace",
        &[&c.g],
        vec![make_i("blocksize", block), make_s("mode", "DCR")],
    ))
}
