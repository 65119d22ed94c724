#!/usr/bin/env python3
"""Exports the ONNX test models of the ONNX Runtime backend and their reference gradients.

Reference gradients come from the exporting framework's own autodiff (torch.autograd) or, for
scikit-learn (which has none), from the network's analytic backward pass in numpy.

    python tests/data/onnx/make_onnx.py              # small models, committed under tests/data/onnx
    python tests/data/onnx/make_onnx.py --large DIR  # + a full-width CIFAR ResNet-18 (45 MB per
                                                     #   checkpoint), written at test time

Requirements: scripts/requirements-test.txt (torch 2.13.0, onnx, onnxscript, scikit-learn, skl2onnx).
Seeded: re-running on the same versions rewrites the same numbers.
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "golden"
sys.path.insert(0, str(GOLDEN))
sys.path.insert(0, str(HERE))
from make_golden import make_cnn, make_mlp  # noqa: E402
from models import OpZoo, ResNet18, TextClassifier, Transformer  # noqa: E402

warnings.filterwarnings("ignore")
torch.manual_seed(0)
torch.set_num_threads(1)


def export(model, example, path, dynamo):
    model.eval()
    if dynamo:
        torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["logits"], dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("N", min=1)},), opset_version=18, verbose=False)
    else:
        torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["logits"], dynamo=False,
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, opset_version=17)


def torch_grads(model, x, classes, target, wrt_fn=None):
    """Gradient of each row's logit/probability of `classes` (argmax when None) w.r.t. the input or
    the tensor `wrt_fn` returns."""
    model.eval()
    if wrt_fn is None:
        w = torch.from_numpy(x).clone().requires_grad_(True)
        y = model(w)
    else:
        w, y = wrt_fn(model, torch.from_numpy(x))
    if classes is None:
        classes = y.argmax(1)
    s = y if target == "logit" else torch.softmax(y, 1)
    (g,) = torch.autograd.grad(s[torch.arange(len(x)), classes].sum(), w)
    return g.detach().numpy().astype(np.float32), y.detach().numpy().astype(np.float32)


def perturbed_checkpoints(model, k, scale, seed):
    """k states of `model`: a random walk on every float parameter (stands in for training)."""
    g = torch.Generator().manual_seed(seed)
    states = []
    for _ in range(k):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g))
        states.append({n: t.clone() for n, t in model.state_dict().items()})
    return states


def save_goldens(d, model, x, labels, wrt_fn=None):
    for target in ["logit", "probability"]:
        for mode, cls in [("given", torch.from_numpy(labels).long()), ("argmax", None)]:
            g, logits = torch_grads(model, x, cls, target, wrt_fn)
            np.save(d / f"grad_{target}_{mode}.npy", g)
    np.save(d / "logits.npy", logits)


def golden_checkpoints():
    """The skeleton's MLP and CNN golden checkpoints, exported with the legacy exporter (every epoch)
    and the dynamo exporter (last epoch)."""
    from safetensors.torch import load_file
    for name, make, k in [("mlp", make_mlp, 10), ("cnn", make_cnn, 6)]:
        d = HERE / name
        d.mkdir(exist_ok=True)
        x = np.load(GOLDEN / name / "x.npy")
        for epoch in range(1, k + 1):
            m = make()
            m.load_state_dict(load_file(str(GOLDEN / name / "ckpt" / f"epoch_{epoch}.safetensors")))
            export(m, torch.from_numpy(x[:2]), d / f"epoch_{epoch}.onnx", dynamo=False)
            if epoch == k:
                export(m, torch.from_numpy(x[:2]), d / f"dynamo_epoch_{epoch}.onnx", dynamo=True)


def transformer():
    d = HERE / "transformer"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 6, 16)).astype(np.float32)
    y = rng.integers(0, 3, size=6).astype(np.int64)
    m = Transformer()
    for i, state in enumerate(perturbed_checkpoints(m, 3, 0.05, 1), start=1):
        m.load_state_dict(state)
        export(m, torch.from_numpy(x[:2]), d / f"epoch_{i}.onnx", dynamo=False)
    export(m, torch.from_numpy(x[:2]), d / "dynamo_epoch_3.onnx", dynamo=True)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    save_goldens(d, m, x, y)


def opzoo():
    d = HERE / "opzoo"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, size=5).astype(np.int64)
    m = OpZoo()
    for i, state in enumerate(perturbed_checkpoints(m, 2, 0.05, 3), start=1):
        m.load_state_dict(state)
        export(m, torch.from_numpy(x[:2]), d / f"epoch_{i}.onnx", dynamo=False)
    export(m, torch.from_numpy(x[:2]), d / "dynamo_epoch_2.onnx", dynamo=True)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    save_goldens(d, m, x, y)
    ops = sorted({n.op_type for n in onnx.load(str(d / "epoch_2.onnx")).graph.node}
                 | {n.op_type for n in onnx.load(str(d / "dynamo_epoch_2.onnx")).graph.node})
    (d / "ops.txt").write_text("\n".join(ops) + "\n")


class Recurrent(torch.nn.Module):
    """A bidirectional LSTM, a GRU and a tanh RNN stacked over [N, T, F], the last step scored."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.gru = torch.nn.GRU(12, 5, batch_first=True)
        self.rnn = torch.nn.RNN(5, 4, batch_first=True)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        h, _ = self.lstm(x)
        h, _ = self.gru(h)
        h, _ = self.rnn(h)
        return self.fc(h[:, -1])


def recurrent():
    """LSTM, GRU and RNN (torch's legacy exporter writes the ONNX ops), against torch autograd."""
    d = HERE / "recurrent"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 5, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=6).astype(np.int64)
    m = Recurrent()
    for i, state in enumerate(perturbed_checkpoints(m, 2, 0.05, 4), start=1):
        m.load_state_dict(state)
        export(m, torch.from_numpy(x[:2]), d / f"epoch_{i}.onnx", dynamo=False)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    save_goldens(d, m.double(), x.astype(np.float64), y)


def embedding_wrt(model, ids):
    e = model.emb(ids).detach().requires_grad_(True)
    return e, model.fc(e.mean(dim=1))


def text():
    d = HERE / "text"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 50, size=(6, 7)).astype(np.int64)
    y = rng.integers(0, 4, size=6).astype(np.int64)
    m = TextClassifier()
    for i, state in enumerate(perturbed_checkpoints(m, 3, 0.1, 2), start=1):
        m.load_state_dict(state)
        export(m, torch.from_numpy(ids[:2]), d / f"epoch_{i}.onnx", dynamo=False)
    np.save(d / "x.npy", ids)
    np.save(d / "y.npy", y)
    save_goldens(d, m, ids, y, wrt_fn=embedding_wrt)
    # The embedding lookup's output, named in the exported graph.
    g = onnx.load(str(d / "epoch_3.onnx")).graph
    inits = {t.name for t in g.initializer}
    gather = [n for n in g.node if n.op_type == "Gather" and n.input[0] in inits][0]
    (d / "wrt.txt").write_text(gather.output[0] + "\n")


def sklearn():
    """An MLPClassifier exported with skl2onnx: ai.onnx.ml ops on the label branch, probabilities as
    the graph output, pre-softmax scores (`add_result1`) as the tensor scored."""
    from sklearn.neural_network import MLPClassifier
    from skl2onnx import to_onnx
    d = HERE / "sklearn"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = ((X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8)).astype(np.int64)
    clf = MLPClassifier(hidden_layer_sizes=(12,), activation="tanh", random_state=0, learning_rate_init=0.01)
    xs, ys = X[:10], y[:10]
    for epoch in range(1, 4):
        for _ in range(5):
            clf.partial_fit(X, y, classes=np.arange(3))
        onx = to_onnx(clf, X[:1], options={"zipmap": False}, target_opset=17)
        onnx.save(onx, str(d / f"epoch_{epoch}.onnx"))
    W1, W2 = clf.coefs_
    b1, b2 = clf.intercepts_
    h = np.tanh(xs.astype(np.float64) @ W1 + b1)
    logits = h @ W2 + b2
    for mode, cls in [("given", ys), ("argmax", logits.argmax(1))]:
        g = np.stack([W1 @ ((1 - h[i] ** 2) * W2[:, cls[i]]) for i in range(len(xs))])
        np.save(d / f"grad_logit_{mode}.npy", g.astype(np.float32))
    np.save(d / "x.npy", xs)
    np.save(d / "y.npy", ys)
    np.save(d / "logits.npy", logits.astype(np.float32))


def unsupported():
    """A graph with two ops vog has no gradient rule for (Hardmax, Shrink) on the scored path."""
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).flatten().tolist())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 3], np.ones((4, 3), np.float32).flatten().tolist())
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="first_matmul"),
        helper.make_node("Shrink", ["h0"], ["h1"], name="the_shrink", lambd=0.1),
        helper.make_node("Hardmax", ["h1"], ["h2"], name="the_hardmax"),
        helper.make_node("MatMul", ["h2", "w2"], ["logits"], name="second_matmul"),
    ]
    graph = helper.make_graph(nodes, "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(HERE / "unsupported.onnx"))


def resnet(out):
    """A full-width CIFAR ResNet-18 (11M parameters): two checkpoints, inputs and torch gradients."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    m = ResNet18(width=64)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    for i, state in enumerate(perturbed_checkpoints(m, 2, 0.002, 7), start=1):
        m.load_state_dict(state)
        export(m, torch.from_numpy(x[:2]), d / f"epoch_{i}.onnx", dynamo=False)
    export(m, torch.from_numpy(x[:2]), d / "dynamo_epoch_2.onnx", dynamo=True)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    save_goldens(d, m, x, y)
    (d / "done").write_text("ok\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", help="also write the ResNet-18 test models into this directory")
    ap.add_argument("--only-large", action="store_true", help="write only the large models")
    a = ap.parse_args()
    if not a.only_large:
        golden_checkpoints()
        transformer()
        opzoo()
        text()
        recurrent()
        sklearn()
        unsupported()
        print("ONNX test models written under", HERE)
    if a.large:
        resnet(a.large)
        print("ResNet-18 test models written under", a.large)
