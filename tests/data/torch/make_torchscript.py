#!/usr/bin/env python3
"""Writes TorchScript test checkpoints for the libtorch backend, with PyTorch's own gradients and
VoG as the reference (float32 models, like the backend; VoG formula in float64).

    python tests/data/torch/make_torchscript.py OUT_DIR

OUT_DIR/mlp, OUT_DIR/cnn: the skeleton's golden checkpoints (tests/data/golden), traced, every epoch.
OUT_DIR/resnet18: a full-width CIFAR ResNet-18, three perturbed checkpoints.
Each holds x.npy, y.npy, grad_<epoch>_<target>_<mode>.npy and vog.json; OUT_DIR/state_dict.pt is a
plain state_dict pickle (not TorchScript) for the error test.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "golden"))
sys.path.insert(0, str(HERE.parent / "onnx"))
from make_golden import class_normalize, make_cnn, make_mlp, windows  # noqa: E402
from models import ResNet18  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)


def grads(m, x, classes, target):
    xt = torch.from_numpy(x).clone().requires_grad_(True)
    y = m(xt)
    if classes is None:
        classes = y.argmax(1)
    s = y if target == "logit" else torch.softmax(y.double(), 1)
    (g,) = torch.autograd.grad(s[torch.arange(len(x)), classes].sum(), xt)
    return g.numpy(), y.detach().numpy(), classes


def vog(stack, channel_mean=True):
    g = np.asarray(stack, dtype=np.float64)
    if channel_mean and g.ndim == 5 and g.shape[2] > 1:
        g = g.mean(axis=2)
    std = np.sqrt(((g - g.mean(axis=0)) ** 2).mean(axis=0))
    return std.reshape(std.shape[0], -1).mean(axis=1)


def write(out, name, modules, x, y):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    k = len(modules)
    for i, m in enumerate(modules, start=1):
        m.eval()
        torch.jit.trace(m, torch.from_numpy(x[:2])).save(str(d / f"epoch_{i}.pt"))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    ref = {"windows": {n: list(r) for n, r in windows(k).items()}}
    last_logits = modules[-1](torch.from_numpy(x)).detach()
    predicted = last_logits.argmax(1)
    for target in ["logit", "probability"]:
        for mode in ["true", "predicted"]:
            cls = torch.from_numpy(y).long() if mode == "true" else predicted
            stack = []
            for i, m in enumerate(modules, start=1):
                g, _, _ = grads(m, x, cls, target)
                stack.append(g)
                if i in (1, k):
                    np.save(d / f"grad_{i}_{target}_{mode}.npy", g.astype(np.float32))
            stack = np.stack(stack)
            norm_classes = y if mode == "true" else predicted.numpy()
            entry = {}
            for wn, (s, e) in windows(k).items():
                raw = vog(stack[s:e])
                entry[wn] = {"raw": raw.tolist(), "normalized": class_normalize(raw, norm_classes).tolist()}
            ref[f"{mode}/{target}"] = entry
    (d / "vog.json").write_text(json.dumps(ref))


def from_golden(name, make, k):
    from safetensors.torch import load_file
    g = HERE.parent / "golden" / name
    mods = []
    for e in range(1, k + 1):
        m = make()
        m.load_state_dict(load_file(str(g / "ckpt" / f"epoch_{e}.safetensors")))
        mods.append(m.eval())
    return mods, np.load(g / "x.npy"), np.load(g / "y.npy")


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make, k in [("mlp", make_mlp, 10), ("cnn", make_cnn, 6)]:
        mods, x, y = from_golden(name, make, k)
        write(out, name, mods, x, y)
        if name == "mlp":
            torch.save(mods[0].state_dict(), str(out / "state_dict.pt"))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    base = ResNet18(width=64)
    for mod in base.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    mods = []
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        with torch.no_grad():
            for p in base.parameters():
                p.add_(0.002 * torch.randn(p.shape, generator=g))
        m = ResNet18(width=64)
        m.load_state_dict(base.state_dict())
        mods.append(m.eval())
    write(out, "resnet18", mods, x, y)
    (out / "done").write_text("ok\n")
    print("TorchScript test models written under", out)


if __name__ == "__main__":
    main(sys.argv[1])
