//! The [`Builder`] that collects the reverse pass: fresh tensor names, the nodes and constant
//! initializers it adds, and the small graph idioms the rules share (`unb` sums a gradient over
//! broadcast axes, `scatter_adjoint` reverses a data-movement op, `fit_spatial_to` crops or pads a
//! transposed convolution's output, `seed_head` starts the sweep). It knows nothing of particular
//! ops' rules; those are in `rules`, which build on it.

use std::collections::{HashMap, HashSet};

use vog_core::Target;

use super::names::{CLASSES_INPUT, VOG_DOMAIN};
use super::shapes::SameShapes;
use crate::graph::{make_i, make_s, make_t, tensor_f32, tensor_i64, Constants};
use crate::proto::{tensor_proto::DataType, AttributeProto, NodeProto, TensorProto};

/// The reverse pass being built, and what the rules need to know about the forward graph.
pub(super) struct Builder<'a> {
    /// The forward graph's constants (initializers and `Constant` nodes).
    pub(super) consts: &'a Constants<'a>,
    /// Ranks of the forward graph's tensors, where known.
    pub(super) ranks: HashMap<String, usize>,
    /// Nodes added for the reverse pass, in execution order.
    pub(super) nodes: Vec<NodeProto>,
    /// Constants added for the reverse pass.
    pub(super) inits: Vec<TensorProto>,
    /// Counter behind [`Builder::fresh`].
    n: usize,
    /// Forward nodes that must gain a second output (MaxPool indices): node index → tensor name.
    pub(super) extra_outputs: HashMap<usize, String>,
    /// Whether [`VOG_DOMAIN`](super::VOG_DOMAIN) kernels may be used, and whether one was.
    pub(super) vog_ops: bool,
    pub(super) used_vog_domain: bool,
    /// Outputs of `Relu` nodes read by exactly one node (a max pool may take over their backward).
    pub(super) lone_relu_outputs: HashSet<String>,
    /// Gradients that already went through the ReLU producing their tensor.
    pub(super) relu_applied: HashSet<String>,
    /// Forward tensors known to share a shape.
    pub(super) shapes: SameShapes,
}

impl<'a> Builder<'a> {
    /// An empty reverse pass over a forward graph with these constants, ranks, shape classes and
    /// lone ReLU outputs; `vog_ops` allows [`VOG_DOMAIN`] kernels.
    pub(super) fn new(
        consts: &'a Constants<'a>,
        (ranks, shapes): (HashMap<String, usize>, SameShapes),
        vog_ops: bool,
        lone_relu_outputs: HashSet<String>,
    ) -> Self {
        Builder {
            consts,
            ranks,
            nodes: Vec::new(),
            inits: Vec::new(),
            n: 0,
            extra_outputs: HashMap::new(),
            vog_ops,
            used_vog_domain: false,
            lone_relu_outputs,
            relu_applied: HashSet::new(),
            shapes,
        }
    }

    /// A new tensor name, unique in the graph: `vog_grad/{hint}_{k}`.
    pub(super) fn fresh(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("vog_grad/{hint}_{}", self.n)
    }

    /// Adds a node with the given outputs.
    pub(super) fn push(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let name = format!("vog_grad/{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a one-output node and returns its output.
    pub(super) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.push(op, inputs, vec![out.clone()], attrs);
        out
    }

    /// Adds a one-output node of vog's own domain ([`VOG_DOMAIN`]) and returns its output;
    /// the graph then imports that domain.
    pub(super) fn vog_op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.used_vog_domain = true;
        let out = self.op(op, inputs, attrs);
        self.nodes.last_mut().expect("the node just added").domain = VOG_DOMAIN.into();
        out
    }

    /// Adds a node with `n` outputs and returns them.
    pub(super) fn ops(
        &mut self,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        self.push(op, inputs, outs.clone(), attrs);
        outs
    }

    /// A 1-d int64 constant.
    pub(super) fn i64s(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_i64(
            &name,
            vec![values.len() as i64],
            values.to_vec(),
        ));
        name
    }

    /// A scalar int64 constant.
    pub(super) fn i64_scalar(&mut self, v: i64) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_i64(&name, vec![], vec![v]));
        name
    }

    /// A float scalar with the element type of `like`.
    pub(super) fn scalar_like(&mut self, v: f32, like: &str) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_f32(&name, vec![], vec![v]));
        self.op("CastLike", &[&name, like], vec![])
    }

    /// A float tensor constant with the element type of `like`.
    pub(super) fn floats_like(&mut self, dims: Vec<i64>, values: Vec<f32>, like: &str) -> String {
        let name = self.fresh("const");
        self.inits.push(tensor_f32(&name, dims, values));
        self.op("CastLike", &[&name, like], vec![])
    }

    /// The sum of the gradients reaching one tensor (the tensor itself when there is one).
    pub(super) fn sum(&mut self, mut gs: Vec<String>) -> String {
        if gs.len() == 1 {
            return gs.pop().expect("one");
        }
        let refs: Vec<&str> = gs.iter().map(String::as_str).collect();
        self.op("Sum", &refs, vec![])
    }

    /// `Shape(x)`.
    pub(super) fn shape(&mut self, x: &str) -> String {
        self.op("Shape", &[x], vec![])
    }

    /// `Size(x)`.
    pub(super) fn size(&mut self, x: &str) -> String {
        self.op("Size", &[x], vec![])
    }

    /// `Reshape(g, Shape(x))`.
    pub(super) fn reshape_like(&mut self, g: &str, x: &str) -> String {
        let s = self.shape(x);
        self.op("Reshape", &[g, &s], vec![make_i("allowzero", 1)])
    }

    /// Zeros shaped and typed like `x`.
    pub(super) fn zeros_like(&mut self, x: &str) -> String {
        let s = self.shape(x);
        let z = self.op(
            "ConstantOfShape",
            &[&s],
            vec![make_t("value", tensor_f32("", vec![1], vec![0.0]))],
        );
        self.op("CastLike", &[&z, x], vec![])
    }

    /// [`Builder::unb`] for `t` shaped like the forward tensor `y` (a broadcasting op's output):
    /// where the ranks of `y` and `a` are known, the axes to sum are found with fewer nodes
    /// (the leading ones are known; of the others, those where `a` has size 1: summing over an axis
    /// where `t` has size 1 too changes nothing).
    pub(super) fn unb_like(&mut self, t: &str, y: &str, a: &str) -> String {
        let (Some(ry), Some(ra)) = (self.ranks.get(y).copied(), self.ranks.get(a).copied()) else {
            return self.unb(t, a);
        };
        if ra > ry {
            return self.unb(t, a);
        }
        if ra == 0 {
            return self.op(
                "ReduceSum",
                &[t],
                vec![make_i("keepdims", 0), make_i("noop_with_empty_axes", 0)],
            );
        }
        let pad = ry - ra;
        let t = if pad > 0 {
            let lead: Vec<i64> = (0..pad as i64).collect();
            let axes = self.i64s(&lead);
            self.op("ReduceSum", &[t, &axes], vec![make_i("keepdims", 0)])
        } else {
            t.to_string()
        };
        let sa = self.shape(a);
        let one = self.i64_scalar(1);
        let a_is_one = self.op("Equal", &[&sa, &one], vec![]);
        let nz = self.op("NonZero", &[&a_is_one], vec![]);
        let flat = self.i64s(&[-1]);
        let axes = self.op("Reshape", &[&nz, &flat], vec![]);
        self.op(
            "ReduceSum",
            &[&t, &axes],
            vec![make_i("keepdims", 1), make_i("noop_with_empty_axes", 1)],
        )
    }

    /// Sums `t` over the axes along which `a` was broadcast to `t`'s shape, then reshapes to `a`.
    pub(super) fn unb(&mut self, t: &str, a: &str) -> String {
        let st = self.shape(t);
        let sa = self.shape(a);
        let rt = self.size(&st);
        let ra = self.size(&sa);
        let pad = self.op("Sub", &[&rt, &ra], vec![]);
        let zero = self.i64_scalar(0);
        let pad = self.op("Max", &[&pad, &zero], vec![]);
        let shape1 = self.i64s(&[1]);
        let pad = self.op("Reshape", &[&pad, &shape1], vec![]);
        let ones = self.op(
            "ConstantOfShape",
            &[&pad],
            vec![make_t("value", tensor_i64("", vec![1], vec![1]))],
        );
        let sa_full = self.op("Concat", &[&ones, &sa], vec![make_i("axis", 0)]);
        let one = self.i64_scalar(1);
        let a_is_one = self.op("Equal", &[&sa_full, &one], vec![]);
        let t_is_one = self.op("Equal", &[&st, &one], vec![]);
        let t_not_one = self.op("Not", &[&t_is_one], vec![]);
        let mask = self.op("And", &[&a_is_one, &t_not_one], vec![]);
        let nz = self.op("NonZero", &[&mask], vec![]);
        let flat = self.i64s(&[-1]);
        let axes = self.op("Reshape", &[&nz, &flat], vec![]);
        let r = self.op(
            "ReduceSum",
            &[t, &axes],
            vec![make_i("keepdims", 1), make_i("noop_with_empty_axes", 1)],
        );
        self.op("Reshape", &[&r, &sa], vec![make_i("allowzero", 1)])
    }

    /// The adjoint of a pure data-movement op `f`: scatter-add `g` back through `f` applied to the
    /// element indices of `x`.
    pub(super) fn scatter_adjoint(
        &mut self,
        g: &str,
        x: &str,
        f: impl FnOnce(&mut Self, &str) -> String,
    ) -> String {
        let n = self.size(x);
        let start = self.i64_scalar(0);
        let step = self.i64_scalar(1);
        let range = self.op("Range", &[&start, &n, &step], vec![]);
        let sx = self.shape(x);
        let iota = self.op("Reshape", &[&range, &sx], vec![]);
        let idx = f(self, &iota);
        let flat = self.i64s(&[-1]);
        let idx = self.op("Reshape", &[&idx, &flat], vec![]);
        let gf = self.op("Reshape", &[g, &flat], vec![]);
        let shape1 = self.i64s(&[1]);
        let n1 = self.op("Reshape", &[&n, &shape1], vec![]);
        let z = self.op(
            "ConstantOfShape",
            &[&n1],
            vec![make_t("value", tensor_f32("", vec![1], vec![0.0]))],
        );
        let z = self.op("CastLike", &[&z, g], vec![]);
        let s = self.op(
            "ScatterElements",
            &[&z, &idx, &gf],
            vec![make_i("axis", 0), make_s("reduction", "add")],
        );
        self.op("Reshape", &[&s, &sx], vec![])
    }

    /// Spatial dims of `x` (everything from axis 2).
    pub(super) fn spatial(&mut self, x: &str) -> String {
        let s = self.shape(x);
        let two = self.i64s(&[2]);
        let big = self.i64s(&[i64::MAX]);
        self.op("Slice", &[&s, &two, &big], vec![])
    }

    /// Crops or zero-pads the trailing end of the spatial axes of `y` to those of `x`. A transposed
    /// convolution run without end padding covers every input position some window read; rows
    /// past the last window are absent and get zero gradient.
    pub(super) fn fit_spatial_to(&mut self, y: &str, x: &str) -> String {
        let sx = self.spatial(x);
        let sxf = self.shape(x);
        let rank = self.size(&sxf);
        let two = self.i64_scalar(2);
        let step = self.i64_scalar(1);
        let axes = self.op("Range", &[&two, &rank, &step], vec![]);
        let zeros = self.op("Sub", &[&sx, &sx], vec![]);
        let y = self.op("Slice", &[y, &zeros, &sx, &axes], vec![]);
        let sy = self.spatial(&y);
        let diff = self.op("Sub", &[&sx, &sy], vec![]);
        let rank1 = self.shape(&sxf);
        let begins = self.op(
            "ConstantOfShape",
            &[&rank1],
            vec![make_t("value", tensor_i64("", vec![1], vec![0]))],
        );
        let nc = self.i64s(&[0, 0]);
        let pads = self.op("Concat", &[&begins, &nc, &diff], vec![make_i("axis", 0)]);
        self.op("Pad", &[&y, &pads], vec![make_s("mode", "constant")])
    }

    /// Begin pads only (end pads zeroed): transposed convolutions are run uncropped at the end.
    pub(super) fn begin_pads(pads: &[i64]) -> Vec<i64> {
        let r = pads.len() / 2;
        pads[..r]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, r))
            .collect()
    }

    /// The seed d(target)/d(output) and the classes used.
    pub(super) fn seed_head(&mut self, y: &str, target: Target) -> (String, String) {
        let am = self.op(
            "ArgMax",
            &[y],
            vec![make_i("axis", 1), make_i("keepdims", 0)],
        );
        let zero = self.i64_scalar(0);
        let neg = self.op("Less", &[CLASSES_INPUT, &zero], vec![]);
        let cls = self.op("Where", &[&neg, &am, CLASSES_INPUT], vec![]);
        let sy = self.shape(y);
        let one = self.i64_scalar(1);
        let depth = self.op("Gather", &[&sy, &one], vec![make_i("axis", 0)]);
        let values = self.fresh("const");
        self.inits
            .push(tensor_f32(&values, vec![2], vec![0.0, 1.0]));
        let oh = self.op("OneHot", &[&cls, &depth, &values], vec![make_i("axis", -1)]);
        let oh = self.op("CastLike", &[&oh, y], vec![]);
        let seed = match target {
            Target::Logit => oh,
            Target::Probability => {
                // In double precision: for a confident row p_c ≈ 1, and `onehot − p` would lose
                // most of its digits in float.
                let to_double = vec![make_i("to", i64::from(DataType::Double as i32))];
                let yd = self.op("Cast", &[y], to_double.clone());
                let ohd = self.op("Cast", &[&oh], to_double);
                let p = self.op("Softmax", &[&yd], vec![make_i("axis", -1)]);
                let po = self.op("Mul", &[&p, &ohd], vec![]);
                let axes = self.i64s(&[-1]);
                let pc = self.op("ReduceSum", &[&po, &axes], vec![make_i("keepdims", 1)]);
                let d = self.op("Sub", &[&ohd, &p], vec![]);
                let seed = self.op("Mul", &[&pc, &d], vec![]);
                self.op("CastLike", &[&seed, y], vec![])
            }
        };
        (seed, cls)
    }
}
