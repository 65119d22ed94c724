#!/usr/bin/env python3
"""Writes the golden files that vog's integration tests compare against.

Independent reference: PyTorch autograd and numpy, following the paper's formula literally
(stack every gradient, population std over checkpoints, mean over elements, class-normalize).

    python tests/data/golden/make_golden.py          # needs torch, numpy, safetensors

Requirements: scripts/requirements-reference.txt; scripts/regenerate-golden.sh makes the venv and runs this.
Everything is seeded; re-running rewrites identical files on the same torch version.
"""
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
torch.manual_seed(0)
np.random.seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def thirds(k):
    base, extra = divmod(k, 3)
    out, start = [], 0
    for i in range(3):
        n = base + (1 if i < extra else 0)
        out.append((start, start + n))
        start += n
    return out


def windows(k):
    e, m, l = thirds(k)
    w = {"all": (0, k), "early": e, "middle": m, "late": l}
    return {name: r for name, r in w.items() if r[1] - r[0] >= 2}


def vog_from_stack(grads, channel_mean=True):
    """grads: [K, N, ...] -> VoG per example, per the paper's formula (two-pass, population std)."""
    g = np.asarray(grads, dtype=np.float64)
    if channel_mean and g.ndim == 5 and g.shape[2] > 1:  # [K, N, C, H, W]
        g = g.mean(axis=2)
    mu = g.mean(axis=0)
    std = np.sqrt(((g - mu) ** 2).mean(axis=0))
    return std.reshape(std.shape[0], -1).mean(axis=1)


def class_normalize(v, classes):
    out = np.zeros_like(v)
    for c in np.unique(classes):
        idx = classes == c
        mu, sd = v[idx].mean(), v[idx].std()
        out[idx] = 0.0 if (idx.sum() < 2 or sd == 0) else (v[idx] - mu) / sd
    return out


def input_gradients(model, x, classes, target):
    """Gradient of each row's logit/probability of `classes` (or the argmax when None)."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    if classes is None:
        classes = logits.argmax(dim=1)
    scores = logits if target == "logit" else torch.softmax(logits, dim=1)
    sel = scores[torch.arange(len(x)), classes]
    (grad,) = torch.autograd.grad(sel.sum(), x)
    return logits.detach(), grad.detach(), classes


def train_and_save(model, x_train, y_train, epochs, out_dir, lr):
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), 16):
            idx = perm[i : i + 16]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out_dir / f"epoch_{epoch}.safetensors"))


def reference_scores(make_model, ckpt_dir, k, x, y):
    """All label modes, targets and windows, computed in float64 from the saved checkpoints."""
    from safetensors.torch import load_file

    models = []
    for epoch in range(1, k + 1):
        m = make_model()
        m.load_state_dict(load_file(str(ckpt_dir / f"epoch_{epoch}.safetensors")))
        models.append(m.double().eval())
    xd = torch.from_numpy(x).double()
    last_logits = models[-1](xd).detach()
    predicted = last_logits.argmax(dim=1)
    out = {"predicted": predicted.tolist(), "windows": {n: list(r) for n, r in windows(k).items()}}
    for mode in ["true", "predicted", "predicted-each"]:
        for target in ["logit", "probability"]:
            grads = []
            for m in models:
                if mode == "true":
                    cls = torch.from_numpy(y).long()
                elif mode == "predicted":
                    cls = predicted
                else:
                    cls = None
                _, g, _ = input_gradients(m, xd, cls, target)
                grads.append(g.numpy())
            grads = np.stack(grads)
            norm_classes = y if mode == "true" else predicted.numpy()
            entry = {"label_used": [int(c) for c in norm_classes]}
            for name, (s, e) in windows(k).items():
                raw = vog_from_stack(grads[s:e])
                entry[name] = {"raw": raw.tolist(), "normalized": class_normalize(raw, norm_classes).tolist()}
            out[f"{mode}/{target}"] = entry
    return out


def make_mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 4),
    )


def make_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),  # 0
        torch.nn.BatchNorm2d(6),  # 1
        torch.nn.ReLU(),  # 2
        torch.nn.MaxPool2d(2),  # 3: 12 -> 6
        torch.nn.Conv2d(6, 8, 3, padding=1, groups=2),  # 4
        torch.nn.BatchNorm2d(8),  # 5
        torch.nn.ReLU(),  # 6
        torch.nn.MaxPool2d(3, stride=2, padding=1),  # 7: 6 -> 3, kernel != stride
        torch.nn.AvgPool2d(3, stride=1, padding=1),  # 8: 3 -> 3
        torch.nn.Flatten(),  # 9
        torch.nn.Linear(72, 16),  # 10
        torch.nn.ReLU(),  # 11
        torch.nn.Dropout(0.1),  # 12
        torch.nn.Linear(16, 5),  # 13
    )


def blobs(n, shape, classes, noise):
    centers = np.random.randn(classes, *shape).astype(np.float32)
    y = np.random.randint(0, classes, size=n)
    x = centers[y] + noise * np.random.randn(n, *shape).astype(np.float32)
    flip = np.random.rand(n) < 0.1  # some label noise, so that some examples are hard
    y = np.where(flip, np.random.randint(0, classes, size=n), y)
    return x.astype(np.float32), y.astype(np.int64)


def build(name, make_model, shape, classes, k, n_train, n_score, noise, lr):
    d = HERE / name
    x, y = blobs(n_train, shape, classes, noise)
    model = make_model()
    train_and_save(model, torch.from_numpy(x), torch.from_numpy(y), k, d / "ckpt", lr)
    xs, ys = x[:n_score], y[:n_score]
    np.save(d / "x.npy", xs)
    np.save(d / "y.npy", ys)
    ref = reference_scores(make_model, d / "ckpt", k, xs, ys)
    (d / "expected.json").write_text(json.dumps(ref, indent=1))
    reference_gradients(make_model, d, k, xs[:8], ys[:8])


def reference_gradients(make_model, d, k, x, y):
    """Raw logits and input gradients (float32, like the backends) at the first and last checkpoint."""
    from safetensors.torch import load_file

    for epoch in (1, k):
        m = make_model()
        m.load_state_dict(load_file(str(d / "ckpt" / f"epoch_{epoch}.safetensors")))
        m.eval()
        for target in ("logit", "probability"):
            logits, g, _ = input_gradients(m, torch.from_numpy(x), torch.from_numpy(y), target)
            np.save(d / f"grad_epoch_{epoch}_{target}.npy", g.numpy().astype(np.float32))
        _, g, cls = input_gradients(m, torch.from_numpy(x), None, "logit")
        np.save(d / f"grad_epoch_{epoch}_argmax.npy", g.numpy().astype(np.float32))
        np.save(d / f"logits_epoch_{epoch}.npy", logits.numpy().astype(np.float32))


def pooling_cases():
    """Max pool with ties and kernel != stride, avg pool with padding: input gradients."""
    d = HERE / "pool"
    d.mkdir(exist_ok=True)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    x[:, :, 2:5, 2:5] = 0.5  # a plateau: every window over it is a tie
    x[0, 0, 0, :] = 1.0  # ties along an edge
    cases = {}
    for name, pool in {
        "max_k2s2": torch.nn.MaxPool2d(2),
        "max_k3s2p1": torch.nn.MaxPool2d(3, stride=2, padding=1),
        "max_k3s1": torch.nn.MaxPool2d(3, stride=1),
        "avg_k2s2": torch.nn.AvgPool2d(2),
        "avg_k3s2p1": torch.nn.AvgPool2d(3, stride=2, padding=1),
    }.items():
        xi = x.clone().requires_grad_(True)
        y = pool(xi)
        up = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        (g,) = torch.autograd.grad((y * up).sum(), xi)
        cases[name] = {"output": y.detach().flatten().tolist(), "output_shape": list(y.shape),
                       "upstream": up.flatten().tolist(), "grad": g.flatten().tolist()}
    (d / "pool.json").write_text(json.dumps({"input": x.flatten().tolist(), "input_shape": list(x.shape),
                                             "cases": cases}, indent=1))


def stored_gradients():
    """Stored gradients in both layouts, and VoG computed with numpy from the same arrays."""
    d = HERE / "stored"
    rng = np.random.default_rng(5)
    k, n, shape = 6, 12, (3, 4, 4)
    grads = rng.normal(size=(k, n, *shape)).astype(np.float32)
    grads *= rng.uniform(0.2, 3.0, size=(1, n, 1, 1, 1)).astype(np.float32)  # spread VoG
    labels = rng.integers(0, 3, size=n).astype(np.int64)
    for epoch in range(k):
        s = d / "stacked" / f"epoch_{epoch + 1}"
        s.mkdir(parents=True, exist_ok=True)
        np.save(s / "grads.npy", grads[epoch])
        p = d / "per_example" / f"epoch_{epoch + 1}"
        p.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(p / f"ex_{i}.npy", grads[epoch, i])  # ex_2 must sort before ex_10
    np.save(d / "labels.npy", labels)
    out = {"windows": {n_: list(r) for n_, r in windows(k).items()}}
    for reduce in ["mean", "none"]:
        entry = {}
        for name, (s, e) in windows(k).items():
            raw = vog_from_stack(grads[s:e], channel_mean=(reduce == "mean"))
            entry[name] = {"raw": raw.tolist(), "normalized": class_normalize(raw, labels).tolist()}
        out[reduce] = entry
    (d / "expected.json").write_text(json.dumps(out, indent=1))


def reference_layout():
    """Stored gradients exactly as the reference implementation (github.com/chirag126/VOG,
    imagenet/train_get_gradients.py) writes them: a directory `weight_STEP` per checkpoint with
    one channel-averaged gradient `grad_NNNNN.npy` per example beside `classified_flag.npy`
    ([n, 2]: batch index, batch accuracy), `ground_truth.npy` and `pred_label.npy`; and VoG by the
    paper's formula with numpy, class-normalized with the ground truth."""
    d = HERE / "reference_layout"
    rng = np.random.default_rng(11)
    steps, n, shape = [3753, 5004, 6255, 10008, 12510], 10, (6, 6)
    grads = rng.normal(size=(len(steps), n, *shape)).astype(np.float32)
    grads *= rng.uniform(0.2, 3.0, size=(1, n, 1, 1)).astype(np.float32)
    labels = rng.integers(0, 3, size=n).astype(np.int64)
    for k, step in enumerate(steps):
        w = d / f"weight_{step:05d}"
        w.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(w / f"grad_{i:05d}.npy", grads[k, i])
        np.save(w / "classified_flag.npy", np.array([[i, float(rng.uniform() > 0.3)] for i in range(n)]))
        np.save(w / "ground_truth.npy", labels)
        np.save(w / "pred_label.npy", rng.integers(0, 3, size=n).astype(np.int64))
    out = {"windows": {n_: list(r) for n_, r in windows(len(steps)).items()}, "labels": labels.tolist()}
    for name, (s, e) in windows(len(steps)).items():
        raw = vog_from_stack(grads[s:e].astype(np.float64), channel_mean=False)
        out[name] = {"raw": raw.tolist(), "normalized": class_normalize(raw, labels).tolist()}
    (d / "expected.json").write_text(json.dumps(out, indent=1))


def linear_models():
    """Checkpoints of the example plugin (JSON linear models) and VoG from torch autograd."""
    d = HERE / "linear"
    (d / "ckpt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    k, n, features, classes, temperature = 7, 30, 6, 3, 1.5
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    w = rng.normal(size=(classes, features))
    models = []
    for epoch in range(1, k + 1):
        w = w + 0.3 * rng.normal(size=w.shape)  # a random walk stands in for training
        b = rng.normal(size=classes)
        models.append((w.copy(), b))
        (d / "ckpt" / f"epoch_{epoch}.json").write_text(json.dumps({"weight": w.tolist(), "bias": b.tolist()}))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)

    def model(wb):
        m = torch.nn.Linear(features, classes).double()
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(wb[0]) / temperature)
            m.bias.copy_(torch.from_numpy(wb[1]) / temperature)
        return m

    xd = torch.from_numpy(x).double()
    predicted = model(models[-1])(xd).argmax(dim=1)
    out = {"temperature": temperature, "windows": {n_: list(r) for n_, r in windows(k).items()}}
    for mode in ["true", "predicted"]:
        for tgt in ["logit", "probability"]:
            cls = torch.from_numpy(y) if mode == "true" else predicted
            grads = np.stack([input_gradients(model(wb), xd, cls, tgt)[1].numpy() for wb in models])
            norm_classes = y if mode == "true" else predicted.numpy()
            entry = {}
            for name, (s_, e) in windows(k).items():
                raw = vog_from_stack(grads[s_:e])
                entry[name] = {"raw": raw.tolist(), "normalized": class_normalize(raw, norm_classes).tolist()}
            out[f"{mode}/{tgt}"] = entry
    (d / "expected.json").write_text(json.dumps(out, indent=1))


def formats():
    """Small arrays in the on-disk variants numpy produces, for the readers' tests."""
    d = HERE.parent / "formats"
    d.mkdir(exist_ok=True)
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 8.0
    y = np.array([3, 1], dtype=np.int64)
    np.savez(d / "plain.npz", x=x, y=y)
    np.savez_compressed(d / "compressed.npz", x=x, y=y)
    np.save(d / "x_u8.npy", (x * 8).astype(np.uint8))
    np.save(d / "x_f64_be.npy", x.astype(">f8"))
    np.save(d / "x_f16.npy", x.astype(np.float16))
    np.save(d / "y_i32.npy", y.astype(np.int32))
    np.save(d / "x_fortran.npy", np.asfortranarray(x))
    (d / "expected.json").write_text(json.dumps({"x": x.flatten().tolist(), "shape": list(x.shape), "y": y.tolist()}))


if __name__ == "__main__":
    build("mlp", make_mlp, (20,), 4, k=10, n_train=160, n_score=40, noise=1.2, lr=1e-2)
    build("cnn", make_cnn, (3, 12, 12), 5, k=6, n_train=120, n_score=24, noise=1.5, lr=1e-2)
    pooling_cases()
    stored_gradients()
    reference_layout()
    formats()
    linear_models()  # last: it draws from torch's global generator, so it must not shift the others
    print("golden files written under", HERE)
