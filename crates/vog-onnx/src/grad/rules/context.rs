//! What every rule receives and returns: [`Ctx`], the node being differentiated with the
//! gradients flowing into it and the inputs that need one, and [`Grads`], the gradients of its
//! inputs. The dispatcher in `rules` builds the context; the family modules beside this one read
//! it, so that a rule's signature stays `fn(&mut Builder, &Ctx) -> Grads`.

use crate::proto::NodeProto;

/// Gradients of a node's inputs (`None`: not needed, or none), or `Err(())` when the node has no
/// rule.
pub(super) type Grads = std::result::Result<Vec<Option<String>>, ()>;

/// The node a rule differentiates and the gradients flowing into it.
pub(super) struct Ctx<'a> {
    /// The forward node.
    pub(super) n: &'a NodeProto,
    /// Its position in the graph (where an extra output is attached to it).
    pub(super) idx: usize,
    /// The gradient of its first output.
    pub(super) g: String,
    /// The gradients of all its outputs (`None`: none flows in).
    pub(super) gy: &'a [Option<String>],
    /// Which inputs need a gradient.
    pub(super) need: &'a [bool],
    /// The model's `ai.onnx` opset (after raising it for the reverse pass).
    pub(super) opset: i64,
}

impl Ctx<'_> {
    /// Input `i`'s name (empty when absent).
    pub(super) fn x(&self, i: usize) -> &str {
        self.n.input.get(i).map(String::as_str).unwrap_or("")
    }

    /// The first output's name.
    pub(super) fn y(&self) -> &str {
        self.n.output.first().map(String::as_str).unwrap_or("")
    }

    /// Whether input `i` needs a gradient.
    pub(super) fn need(&self, i: usize) -> bool {
        self.need.get(i).copied().unwrap_or(false)
    }
}

/// The gradient of a node's only differentiable input.
pub(super) fn one_input(g: String) -> Grads {
    Ok(vec![Some(g)])
}
