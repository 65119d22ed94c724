//! The names a gradient graph shares with its runners: the graph input and outputs
//! [`gradient_model`](super::gradient_model) adds, the revision of the graphs it builds, and vog's
//! own operator domain and kernels. They live apart from the builder and the rules so that both
//! can name them without importing the module that drives them.

/// Name of the graph input holding one class per row (−1: the row's argmax).
pub const CLASSES_INPUT: &str = "vog_classes";
/// Name of the graph output holding the class differentiated per row.
pub const CLASSES_OUTPUT: &str = "vog_classes_used";
/// Name of the graph output holding the gradient.
pub const GRADIENT_OUTPUT: &str = "vog_gradient";
/// Revision of the graphs [`gradient_model`](super::gradient_model) builds: bumped whenever a
/// change to the builder changes its output for some model, so that caches keyed by it never serve
/// a graph of an older builder.
pub const GRAPH_REVISION: u32 = 7;
/// Operator domain of vog's own kernels (see [`GradSpec::vog_ops`](super::GradSpec::vog_ops)).
pub const VOG_DOMAIN: &str = "ai.vog";
/// `ai.vog.MaxPoolGrad(X, dY) -> dX`: the input gradient of a `MaxPool` over `X` with the same
/// attributes (`kernel_shape`, `strides`, explicit `pads`, `dilations`): each element of `dY` is
/// added at its window's first maximum in `X` (PyTorch's rule), every other element is 0. With
/// `relu = 1`, `X` is a ReLU's output and the gradient is taken through that ReLU as well: an
/// element passes only where its maximum is positive.
pub const MAX_POOL_GRAD: &str = "MaxPoolGrad";
/// `ai.vog.ConvInputGrad(dY, W, XShape) -> dX`: the input gradient of a 2-D `Conv` without
/// groups at stride 1 and dilation 1, with weights `W` `[M, C, kh, kw]`, explicit `pads`
/// (`[top, left, bottom, right]`, each below the kernel's size) and an input of shape `XShape`:
/// `dX[n, c, y, x] = Σ_m Σ_ky Σ_kx W[m, c, ky, kx] · dY[n, m, y + top − ky, x + left − kx]` over
/// the taps inside `dY`. Used for gradients of few channels (an image's), which `ConvTranspose`
/// computes slowly.
pub const CONV_INPUT_GRAD: &str = "ConvInputGrad";
/// `ai.vog.ReluGrad(dY, Y) -> dX`: the input gradient of a `Relu` with output `Y`, `dY · [Y > 0]`
/// in one pass (the same values as `Greater` + `CastLike` + `Mul`, which take three).
pub const RELU_GRAD: &str = "ReluGrad";
