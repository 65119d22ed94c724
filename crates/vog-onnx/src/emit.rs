//! A small writer of ONNX nodes for graph rewrites (`unroll`, `upgrade`): fresh names under a
//! prefix, int64 constants as initializers.

use crate::graph::{make_i, make_ints, tensor_i64};
use crate::proto::{AttributeProto, NodeProto, TensorProto};

/// Nodes and constants being written, with fresh names.
pub(crate) struct Emit {
    prefix: String,
    count: usize,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) inits: Vec<TensorProto>,
}

impl Emit {
    pub(crate) fn new(prefix: String) -> Self {
        Emit {
            prefix,
            count: 0,
            nodes: Vec::new(),
            inits: Vec::new(),
        }
    }

    pub(crate) fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}_{what}_{}", self.prefix, self.count)
    }

    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.name(&op.to_lowercase());
        self.op_to(op, inputs, &out, attrs);
        out
    }

    pub(crate) fn op_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        out: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: out.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    pub(crate) fn ints(&mut self, v: &[i64]) -> String {
        let name = self.name("const");
        self.inits
            .push(tensor_i64(&name, vec![v.len() as i64], v.to_vec()));
        name
    }

    pub(crate) fn scalar(&mut self, v: i64) -> String {
        let name = self.name("const");
        self.inits.push(tensor_i64(&name, vec![], vec![v]));
        name
    }

    /// `t[i]` along axis 0 (the axis removed).
    pub(crate) fn take(&mut self, t: &str, i: i64) -> String {
        let i = self.scalar(i);
        self.op("Gather", &[t, &i], vec![make_i("axis", 0)])
    }

    /// `t[.., from..to]` along the last axis.
    pub(crate) fn cols(&mut self, t: &str, from: i64, to: i64) -> String {
        let (a, b, axis) = (self.ints(&[from]), self.ints(&[to]), self.ints(&[-1]));
        self.op("Slice", &[t, &a, &b, &axis], vec![])
    }

    /// `x · Wᵀ` for a weight `w` of `[out, in]`.
    pub(crate) fn times_t(&mut self, x: &str, w: &str) -> String {
        let wt = self.op("Transpose", &[w], vec![make_ints("perm", vec![1, 0])]);
        self.op("MatMul", &[x, &wt], vec![])
    }

    pub(crate) fn unsqueeze(&mut self, t: &str, axis: i64) -> String {
        let a = self.ints(&[axis]);
        self.op("Unsqueeze", &[t, &a], vec![])
    }
}

impl Emit {
    /// Rows `from..to` of a `[rows, cols]` matrix.
    pub(crate) fn cols_rows(&mut self, t: &str, from: i64, to: i64) -> String {
        let (a, b, axis) = (self.ints(&[from]), self.ints(&[to]), self.ints(&[0]));
        self.op("Slice", &[t, &a, &b, &axis], vec![])
    }
}
