#!/usr/bin/env python3
"""The model-zoo sweep's models: popular architectures from timm, torchvision, Hugging Face
transformers, Keras 3 and JAX/flax, exported to ONNX the way their users export them, with VoG
computed from each framework's own autodiff.

    python tests/data/zoo/make_zoo.py OUT              # every model
    python tests/data/zoo/make_zoo.py OUT --only NAME  # some (for debugging a rule)

For each model, OUT/NAME/ holds K checkpoints `ckpt_1.onnx` … (random initialisation, then a
random walk on every parameter standing in for training), the examples `x.npy` and labels `y.npy`,
`vog.json` (the paper's VoG per example, true labels, logit target, in the layout
`vog_conformance::VogCase` reads), `grad_1.npy` … (each checkpoint's reference gradient, rounded
to float32) and `meta.json` (framework, opset, exporter, the ONNX ops in the graph, `wrt`).
OUT/models.json lists the models; OUT/done marks a complete directory.

References are computed in float64 by the framework that defines the model (torch.autograd for
timm, torchvision, transformers and Keras on its torch backend; jax.grad for flax), never by ONNX
Runtime. No weights are downloaded: every model is built from its configuration with random weights.

Requirements: scripts/requirements-test.txt, crates/vog-python/requirements-test.txt and
tests/data/zoo/requirements.txt (timm, torchvision, flax, jax2onnx). Seeded.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import time
import warnings
import zlib
from pathlib import Path


import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)  # exporters' notices (onnx_ir, transformers): not our output
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

K = 3  # checkpoints per model
N = 4  # examples per model
CLASSES = 10


def vog(grads, channel_axis):
    """grads: [K, N, ...] float64 -> the paper's VoG per example (colours averaged over
    `channel_axis` of a 3-D example: 0, 2 or None)."""
    g = np.asarray(grads, dtype=np.float64)
    if channel_axis is not None and g.ndim == 5:
        g = g.mean(axis=2 + channel_axis)
    mu = g.mean(axis=0)
    std = np.sqrt(((g - mu) ** 2).mean(axis=0))
    return std.reshape(std.shape[0], -1).mean(axis=1)


def walk(params, seed, scale=0.05):
    """K states: a random walk on every float parameter, each step `scale` times the tensor's own
    spread (so layers of every size move alike). `params` maps names to torch tensors."""
    g = torch.Generator().manual_seed(seed)
    states, cur = [], {n: p.detach().clone() for n, p in params.items()}
    for _ in range(K):
        for n, p in cur.items():
            if p.is_floating_point() and p.numel() > 0:
                spread = p.abs().mean().clamp(min=1e-3)
                p.add_(scale * spread * torch.randn(p.shape, generator=g, dtype=p.dtype))
        states.append({n: p.clone() for n, p in cur.items()})
    return states


def ops_of(path):
    m = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in m.graph.node}
    for f in m.functions:
        ops |= {n.op_type for n in f.node}
    return sorted(ops), {o.domain or "ai.onnx": o.version for o in m.opset_import}


# --- PyTorch (timm, torchvision, transformers) --------------------------------------------------


def torch_export(model, example, path, opset, dynamo, input_name="x"):
    model.eval()
    if dynamo:
        torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=["logits"],
                          dynamo=True, dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},),
                          opset_version=opset, verbose=False, external_data=False)
    else:
        torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=["logits"],
                          dynamo=False, dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}},
                          opset_version=opset, do_constant_folding=True)


class Logits(torch.nn.Module):
    """A Hugging Face model as `ids or pixels -> logits`."""

    def __init__(self, inner, key):
        super().__init__()
        self.inner, self.key = inner, key

    def forward(self, x):
        return self.inner(**{self.key: x}).logits


class TorchModel:
    """A PyTorch model (timm, torchvision, transformers) as the sweep drives it."""

    def __init__(self, spec):
        torch.manual_seed(spec["seed"])
        self.spec = spec
        self.model = spec["build"]().eval()
        for mod in self.model.modules():  # BatchNorm statistics as after training, not 0/1
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        self.params = dict(self.model.named_parameters())
        self.states = walk(self.params, spec["seed"] + 1)
        self.twins = []
        for state in self.states:  # float64 copies, one per checkpoint, for the references
            self.set_checkpoint_(self.model, state)
            import copy
            self.twins.append(copy.deepcopy(self.model).double().eval())
        self.text = bool(spec.get("text"))
        self.channel_axis = None if self.text else 0
        self.exporter = "torch.onnx (dynamo)" if spec.get("dynamo") else "torch.onnx (legacy)"
        self.wrt = None

    def set_checkpoint_(self, model, state):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(state[n])

    def draw(self, rng):
        if self.text:
            # No padding ids (0 for GPT-2, 1 for RoBERTa): with ids the models look for padding,
            # with embeddings they cannot, and the two must compute the same thing.
            return rng.integers(2, self.spec["vocab"], size=self.spec["shape"]).astype(np.int64)
        return rng.normal(size=self.spec["shape"]).astype(np.float32)

    def export(self, k, x, path):
        self.set_checkpoint_(self.model, self.states[k])
        torch_export(self.model, torch.from_numpy(x[:2]), path, self.spec.get("opset", 17),
                     self.spec.get("dynamo", False), "input_ids" if self.text else "x")
        if self.text and self.wrt is None:
            self.wrt = embedding_output(path, self.spec["vocab"])

    def grads(self, k, x, y, noise):
        """float64 gradients of each row's true-class logit at checkpoint k w.r.t. the input (or the
        word embeddings' output), at the input moved by `noise(tensor)`."""
        m = self.twins[k]
        if self.text:
            base = m.inner.get_input_embeddings()(torch.from_numpy(x)).detach()
        else:
            base = torch.from_numpy(x).double()
        w = torch.from_numpy(noise(base.numpy())).requires_grad_(True)
        logits = m.inner(inputs_embeds=w).logits if self.text else m(w)
        sel = logits[torch.arange(len(x)), torch.from_numpy(y)]
        (g,) = torch.autograd.grad(sel.sum(), w)
        return g.detach().numpy()


def embedding_output(path, vocab):
    """The output of the word-embedding lookup: the Gather from the table with `vocab` rows."""
    g = onnx.load(str(path)).graph
    tables = {t.name for t in g.initializer if len(t.dims) == 2 and t.dims[0] == vocab}
    hits = [n.output[0] for n in g.node if n.op_type == "Gather" and n.input[0] in tables]
    assert len(hits) == 1, f"{path}: word-embedding Gather not found ({hits})"
    return hits[0]


def timm_(name, fused_attn=True, **kw):
    def build():
        import timm
        from timm.layers import set_fused_attn
        # Without fused attention, attention exports as MatMul/Softmax (scaled_dot_product_attention
        # needs opset 14).
        set_fused_attn(fused_attn)
        try:
            return timm.create_model(name, pretrained=False, num_classes=CLASSES, **kw)
        finally:
            set_fused_attn(True)
    return build


def tv(name, **kw):
    def build():
        import torchvision
        return getattr(torchvision.models, name)(weights=None, num_classes=CLASSES, **kw)
    return build


def hf_text(config_cls, model_cls, **cfg):
    def build():
        import transformers
        config = getattr(transformers, config_cls)(vocab_size=100, num_labels=CLASSES, **cfg)
        return Logits(getattr(transformers, model_cls)(config), "input_ids")
    return build


def hf_vision(config_cls, model_cls, **cfg):
    def build():
        import transformers
        config = getattr(transformers, config_cls)(num_labels=CLASSES, **cfg)
        return Logits(getattr(transformers, model_cls)(config), "pixel_values")
    return build


def word_embeddings(model):
    return model.inner.get_input_embeddings()


SMALL_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64)

TORCH = {
    # timm
    "timm-resnet18": dict(build=timm_("resnet18")),
    "timm-resnet10t": dict(build=timm_("resnet10t")),
    "timm-mobilenetv3_small_050": dict(build=timm_("mobilenetv3_small_050")),
    "timm-lcnet_050": dict(build=timm_("lcnet_050")),
    "timm-ghostnet_050": dict(build=timm_("ghostnet_050")),
    "timm-efficientnet_b0": dict(build=timm_("efficientnet_b0")),
    "timm-tf_efficientnet_lite0": dict(build=timm_("tf_efficientnet_lite0")),
    "timm-regnetx_002": dict(build=timm_("regnetx_002")),
    "timm-convnext_atto": dict(build=timm_("convnext_atto")),
    "timm-vit_tiny_patch16": dict(build=timm_("vit_tiny_patch16_224", img_size=64)),
    "timm-levit_128s": dict(build=timm_("levit_128s", img_size=64), shape=(3, 64, 64)),
    "timm-poolformerv2_s12": dict(build=timm_("poolformerv2_s12")),
    "timm-hrnet_w18_small": dict(build=timm_("hrnet_w18_small")),
    "timm-coat_lite_tiny": dict(build=timm_("coat_lite_tiny", img_size=64)),
    "timm-efficientvit_b0": dict(build=timm_("efficientvit_b0")),
    "timm-mobilevit_xxs": dict(build=timm_("mobilevit_xxs")),
    "timm-densenet121": dict(build=timm_("densenet121")),
    "timm-rexnet_100": dict(build=timm_("rexnet_100")),
    "timm-edgenext_xx_small": dict(build=timm_("edgenext_xx_small")),
    "timm-repvgg_a0": dict(build=timm_("repvgg_a0")),
    "timm-mobileone_s0": dict(build=timm_("mobileone_s0")),
    "timm-xcit_nano_12_p16": dict(build=timm_("xcit_nano_12_p16_224", img_size=64)),
    "timm-mobilevit_xxs-opset11": dict(build=timm_("mobilevit_xxs", fused_attn=False), opset=11),
    "timm-efficientnet_b0-opset12": dict(build=timm_("efficientnet_b0"), opset=12),
    "timm-vit_tiny_patch16-opset12": dict(build=timm_("vit_tiny_patch16_224", img_size=64, fused_attn=False),
                                          opset=12),
    # torchvision
    "tv-mobilenet_v3_small": dict(build=tv("mobilenet_v3_small")),
    "tv-shufflenet_v2_x0_5": dict(build=tv("shufflenet_v2_x0_5")),
    "tv-squeezenet1_1": dict(build=tv("squeezenet1_1")),
    "tv-googlenet": dict(build=tv("googlenet", aux_logits=False, init_weights=False)),
    "tv-mnasnet0_5": dict(build=tv("mnasnet0_5")),
    "tv-regnet_y_400mf": dict(build=tv("regnet_y_400mf")),
    "tv-resnet18-dynamo": dict(build=tv("resnet18"), dynamo=True, opset=18),
    # Hugging Face transformers (text w.r.t. the word embeddings; vision w.r.t. the pixels)
    "hf-bert": dict(build=hf_text("BertConfig", "BertForSequenceClassification", **SMALL_BERT)),
    "hf-distilbert": dict(build=hf_text("DistilBertConfig", "DistilBertForSequenceClassification", dim=32,
                                        n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)),
    "hf-roberta": dict(build=hf_text("RobertaConfig", "RobertaForSequenceClassification", **SMALL_BERT,
                                     pad_token_id=1)),
    "hf-gpt2": dict(build=hf_text("GPT2Config", "GPT2ForSequenceClassification", n_embd=32, n_layer=2,
                                  n_head=4, n_positions=64, pad_token_id=0)),
    "hf-vit": dict(build=hf_vision("ViTConfig", "ViTForImageClassification", image_size=32, patch_size=8,
                                   hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64), shape=(3, 32, 32)),
    "hf-convnext": dict(build=hf_vision("ConvNextConfig", "ConvNextForImageClassification",
                                        hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1]), shape=(3, 64, 64)),
    "hf-swin": dict(build=hf_vision("SwinConfig", "SwinForImageClassification", image_size=32, patch_size=2,
                                    embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
                    shape=(3, 32, 32)),
}
for _name, _spec in TORCH.items():
    _spec.setdefault("shape", (3, 64, 64))
    _spec["framework"] = {"timm": "timm", "tv": "torchvision", "hf": "transformers"}[_name.split("-")[0]]
    if _name in ("hf-bert", "hf-distilbert", "hf-roberta", "hf-gpt2"):
        _spec.update(text=True, vocab=100, shape=(12,), embed=word_embeddings)


class KerasModel:
    """A Keras 3 model exported with `model.export(format="onnx")` (torch.onnx on the torch backend,
    jax2onnx on the JAX backend); references by the backend's autodiff through a float64 twin."""

    def __init__(self, spec):
        import keras
        self.keras, self.spec = keras, spec
        keras.utils.set_random_seed(spec["seed"])
        keras.config.set_floatx("float32")
        self.model = spec["build"]()
        self.model(np.zeros((2, *spec["shape"]), np.float32))
        weights = self.model.get_weights()
        g = np.random.default_rng(spec["seed"] + 1)
        self.states = []
        for _ in range(K):  # the same random walk as walk(), on Keras' weight arrays
            weights = [w + (0.05 * max(np.abs(w).mean(), 1e-3) * g.normal(size=w.shape)).astype(w.dtype)
                       if w.size and w.dtype.kind == "f" else w for w in weights]
            self.states.append(weights)
        keras.config.set_floatx("float64")
        self.twin = spec["build"]()
        self.twin(np.zeros((2, *spec["shape"]), np.float64))
        keras.config.set_floatx("float32")
        self.backend = keras.backend.backend()
        self.channel_axis = spec.get("channel_axis", 2 if len(spec["shape"]) == 3 else None)
        self.exporter = f"keras.Model.export (Keras {keras.__version__}, {self.backend} backend)"
        self.wrt = None

    def draw(self, rng):
        return rng.normal(size=self.spec["shape"]).astype(np.float32)

    def export(self, k, x, path):
        self.model.set_weights(self.states[k])
        self.model.export(str(path), format="onnx", verbose=False)

    def grads(self, k, x, y, noise):
        self.twin.set_weights([w.astype(np.float64) if w.dtype.kind == "f" else w for w in self.states[k]])
        w = noise(x.astype(np.float64))
        if self.backend == "torch":
            t = torch.from_numpy(w).requires_grad_(True)
            logits = self.twin(t, training=False)
            (g,) = torch.autograd.grad(logits[torch.arange(len(y)), torch.from_numpy(y)].sum(), t)
            return g.detach().numpy()
        import jax
        import jax.numpy as jnp
        trainable = [v.value for v in self.twin.trainable_variables]
        fixed = [v.value for v in self.twin.non_trainable_variables]

        def picked(xs):
            logits, _ = self.twin.stateless_call(trainable, fixed, xs, training=False)
            return logits[jnp.arange(len(y)), jnp.asarray(y)].sum()
        return np.asarray(jax.grad(picked)(jnp.asarray(w)), dtype=np.float64)


def keras_cnn(pool="max"):
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(16, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2) if pool == "max" else layers.AveragePooling2D(2),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="swish"),
        layers.DepthwiseConv2D(3, padding="same"), layers.GroupNormalization(groups=4), layers.Activation("gelu"),
        layers.GlobalAveragePooling2D(), layers.Dropout(0.1), layers.Dense(CLASSES),
    ])


def keras_app(name, shape=(64, 64, 3), **kw):
    def build():
        import keras
        return getattr(keras.applications, name)(weights=None, input_shape=shape, classes=CLASSES,
                                                 classifier_activation=None, **kw)
    return build


def keras_text():
    import keras
    from keras import layers
    ids = keras.Input((12,), dtype="float32")
    h = layers.Dense(32)(ids[..., None])
    h = layers.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)
    h = layers.BatchNormalization()(h)
    h = layers.Conv1D(16, 3, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(ids, layers.Dense(CLASSES)(h))


KERAS = {
    "keras-cnn": dict(build=keras_cnn, shape=(32, 32, 3)),
    "keras-mobilenetv3small": dict(build=keras_app("MobileNetV3Small", include_preprocessing=False),
                                   shape=(64, 64, 3)),
    "keras-efficientnetb0": dict(build=keras_app("EfficientNetB0"), shape=(64, 64, 3)),
    "keras-mobilenetv2": dict(build=keras_app("MobileNetV2", alpha=0.35), shape=(64, 64, 3)),
    "keras-attention1d": dict(build=keras_text, shape=(12,)),
}
KERAS_JAX = {
    # Average pooling: Keras' JAX export of MaxPooling2D writes a MaxPool over 4 axes (windows of
    # 1 over batch and channels) that ONNX Runtime cannot run ("Unsupported pooling size").
    "keras-jax-cnn": dict(build=lambda: keras_cnn(pool="average"), shape=(32, 32, 3)),
}


class FlaxModel:
    """A flax (nnx) module exported with jax2onnx; references by jax.grad in float64."""

    def __init__(self, spec):
        import jax
        from flax import nnx
        self.jax, self.nnx, self.spec = jax, nnx, spec
        self.module = spec["build"](nnx.Rngs(spec["seed"]))
        graphdef, state = nnx.split(self.module)
        self.graphdef = graphdef
        g = np.random.default_rng(spec["seed"] + 1)
        leaves, self.treedef = jax.tree_util.tree_flatten(state)
        self.states = []
        for _ in range(K):
            leaves = [np.asarray(v) + (0.05 * max(np.abs(np.asarray(v)).mean(), 1e-3)
                                       * g.normal(size=np.shape(v))).astype(np.float32)
                      if np.asarray(v).dtype.kind == "f" else np.asarray(v) for v in leaves]
            self.states.append(leaves)
        self.channel_axis = spec.get("channel_axis", 2 if len(spec["shape"]) == 3 else None)
        import jax2onnx
        self.exporter = f"jax2onnx {getattr(jax2onnx, '__version__', '')}".strip()
        self.wrt = None

    def module_at(self, k, dtype):
        leaves = [v.astype(dtype) if v.dtype.kind == "f" else v for v in self.states[k]]
        state = self.jax.tree_util.tree_unflatten(self.treedef, leaves)
        return self.nnx.merge(self.graphdef, state)

    def draw(self, rng):
        return rng.normal(size=self.spec["shape"]).astype(np.float32)

    def export(self, k, x, path):
        from jax2onnx import to_onnx
        m = self.module_at(k, np.float32)
        to_onnx(lambda xs: m(xs), inputs=[("N", *self.spec["shape"])], return_mode="file",
                output_path=str(path), input_names=["x"], output_names=["logits"])

    def grads(self, k, x, y, noise):
        import jax.numpy as jnp
        m = self.module_at(k, np.float64)

        def picked(xs):
            return m(xs)[jnp.arange(len(y)), jnp.asarray(y)].sum()
        return np.asarray(self.jax.grad(picked)(jnp.asarray(noise(x.astype(np.float64)))), dtype=np.float64)


def flax_mlp(rngs):
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(64, 96, rngs=rngs)
            self.b = nnx.Linear(96, 48, rngs=rngs)
            self.c = nnx.Linear(48, CLASSES, rngs=rngs)

        def __call__(self, x):
            import jax
            h = jax.nn.gelu(self.a(x))
            h = jax.numpy.maximum(self.b(h), 0.1 * self.b(h))  # a leaky ReLU written with Max
            return self.c(jax.nn.tanh(h))
    return MLP(rngs)


def flax_cnn(rngs):
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(3, 16, (3, 3), rngs=rngs)
            self.c2 = nnx.Conv(16, 32, (3, 3), strides=(2, 2), rngs=rngs)
            self.norm = nnx.LayerNorm(32, rngs=rngs)
            self.fc = nnx.Linear(32, CLASSES, rngs=rngs)

        def __call__(self, x):
            import jax
            h = jax.nn.relu(self.c1(x))
            h = nnx.avg_pool(h, window_shape=(2, 2), strides=(2, 2))
            h = jax.nn.silu(self.norm(self.c2(h)))
            return self.fc(h.mean(axis=(1, 2)))
    return CNN(rngs)


def flax_vit(rngs):
    from flax import nnx

    class ViT(nnx.Module):
        def __init__(self, rngs):
            self.patch = nnx.Conv(3, 32, (8, 8), strides=(8, 8), rngs=rngs)
            self.pos = nnx.Param(0.02 * nnx.initializers.normal()(rngs.params(), (16, 32)))
            self.n1 = nnx.LayerNorm(32, rngs=rngs)
            self.att = nnx.MultiHeadAttention(num_heads=4, in_features=32, decode=False, rngs=rngs)
            self.n2 = nnx.LayerNorm(32, rngs=rngs)
            self.up = nnx.Linear(32, 64, rngs=rngs)
            self.down = nnx.Linear(64, 32, rngs=rngs)
            self.fc = nnx.Linear(32, CLASSES, rngs=rngs)

        def __call__(self, x):
            import jax
            h = self.patch(x)
            h = h.reshape(h.shape[0], -1, h.shape[-1]) + self.pos.value
            h = h + self.att(self.n1(h))
            h = h + self.down(jax.nn.gelu(self.up(self.n2(h))))
            return self.fc(h.mean(axis=1))
    return ViT(rngs)


FLAX = {
    "jax-mlp": dict(build=flax_mlp, shape=(64,)),
    "jax-cnn": dict(build=flax_cnn, shape=(32, 32, 3)),
    "jax-vit": dict(build=flax_vit, shape=(32, 32, 3)),
}


def stable_examples(model, k, y, seed):
    """N examples whose gradients sit away from kinks (a ReLU input or a max-pool's top two within
    float32 rounding): each checkpoint's float64 gradient moves by less than 10⁻⁴ of its largest
    magnitude when the input moves by 10⁻⁶ of its spread either way along three random
    directions (piecewise linear networks do not move at all unless a kink is crossed, smooth ones
    move by about 10⁻⁶; both signs, since a kink on one side only is crossed by one of them).
    An example on a kink is drawn again: there float32 and float64 legitimately take different
    branches, which says nothing about the gradient rules the sweep checks. Returns
    (x, gradients [K, N, ...], how many draws were replaced)."""
    rng = np.random.default_rng(seed)
    x = np.stack([model.draw(rng) for _ in range(len(y))])
    redrawn = 0
    for _ in range(10):
        grads = np.stack([model.grads(c, x, y, lambda t: t.astype(np.float64)) for c in range(k)])
        moved = np.zeros(len(y))
        for d in range(3):
            for sign in (1.0, -1.0):
                def nudge(t, sign=sign, d=d):
                    t = t.astype(np.float64)
                    direction = np.random.default_rng(seed * 31 + d).normal(size=t.shape)
                    return t + sign * 1e-6 * t.std() * direction
                for c in range(k):
                    g = model.grads(c, x, y, nudge)
                    diff = np.abs(g - grads[c]).reshape(len(y), -1).max(axis=1)
                    scale = np.abs(grads[c]).reshape(len(y), -1).max(axis=1)
                    moved = np.maximum(moved, diff / np.maximum(scale, 1e-30))
        bad = np.flatnonzero(moved > 1e-4)
        if len(bad) == 0:
            return x, grads, redrawn
        for r in bad:
            x[r] = model.draw(rng)
        redrawn += len(bad)
    raise RuntimeError(f"no examples away from kinks after {redrawn} draws")


def write(name, out, spec, make):
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    spec.setdefault("seed", zlib.crc32(name.encode()) % 10_000)
    model = make(spec)
    rng = np.random.default_rng(spec["seed"])
    y = rng.integers(0, CLASSES, size=N).astype(np.int64)
    x = np.stack([model.draw(rng) for _ in range(2)])
    for k in range(K):
        model.export(k, x, d / f"ckpt_{k + 1}.onnx")
    x, grads, redrawn = stable_examples(model, K, y, spec["seed"] + 2)
    import onnxruntime
    for k in range(K):  # an export ONNX Runtime cannot run is the exporter's failure, not vog's
        session = onnxruntime.InferenceSession(str(d / f"ckpt_{k + 1}.onnx"), providers=["CPUExecutionProvider"])
        session.run(None, {session.get_inputs()[0].name: x})
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    raw = vog(grads, model.channel_axis)
    (d / "vog.json").write_text(json.dumps({"true/logit": {"all": {"raw": raw.tolist()}}}) + "\n")
    for i, g in enumerate(grads, start=1):
        np.save(d / f"grad_{i}.npy", g.astype(np.float32))
    ops, opsets = ops_of(d / "ckpt_1.onnx")
    meta = dict(name=name, framework=spec["framework"], exporter=model.exporter, ops=ops, opsets=opsets,
                checkpoints=K, examples=N, input_shape=list(x.shape[1:]), gradient_shape=list(grads.shape[2:]),
                channel_axis=model.channel_axis, wrt=model.wrt, redrawn=redrawn,
                seconds=round(time.perf_counter() - t0, 1))
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(ops)} ops, {redrawn} redrawn, {meta['seconds']} s", flush=True)
    return meta


def groups():
    """The models by the process that makes them: Keras picks its backend once per process."""
    for specs, framework in [(TORCH, None), (KERAS, "keras"), (KERAS_JAX, "keras"), (FLAX, "jax")]:
        for spec in specs.values():
            spec.setdefault("framework", framework)
    return {
        "torch": {**{n: (s, TorchModel) for n, s in TORCH.items()}, **{n: (s, KerasModel) for n, s in KERAS.items()}},
        "jax": {**{n: (s, KerasModel) for n, s in KERAS_JAX.items()}, **{n: (s, FlaxModel) for n, s in FLAX.items()}},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    ap.add_argument("--group", choices=["torch", "jax"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    everything = groups()
    if a.group:  # a child process: Keras' backend was chosen by its environment
        assert os.environ["KERAS_BACKEND"] == a.group
        for name, (spec, make) in everything[a.group].items():
            if not a.only or name in a.only:
                write(name, out, spec, make)
        return 0
    (out / "done").unlink(missing_ok=True)
    import subprocess
    for group, models in everything.items():
        if a.only and not set(a.only) & set(models):
            continue
        cmd = [sys.executable, __file__, str(out), "--group", group] + (["--only", *a.only] if a.only else [])
        subprocess.run(cmd, check=True, env={**os.environ, "KERAS_BACKEND": group})
    names = [n for models in everything.values() for n in models]
    present = [n for n in names if (out / n / "meta.json").is_file()]
    metas = [json.loads((out / n / "meta.json").read_text()) for n in present]
    (out / "models.json").write_text(json.dumps(metas, indent=1) + "\n")
    if not a.only:
        (out / "done").write_text("ok\n")
    print(f"{len(metas)} models in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
