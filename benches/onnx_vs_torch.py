#!/usr/bin/env python3
"""Throughput of VoG's per-checkpoint work (forward + input gradient) with the ONNX Runtime backend,
against PyTorch eager doing the same work the way a user would write it, on the same models,
checkpoints, batch size and thread count. A benchmark, not a test: figures are ratios from one run,
medians of repeats.

    python benches/onnx_vs_torch.py --vog target/release/vog --plugin target/release/libvog_backend_onnx.so

Needs ORT_DYLIB_PATH (ONNX Runtime 1.31.1) and the packages of scripts/requirements-test.txt.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/data/onnx"))
from models import ResNet18  # noqa: E402


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


MODELS = {
    "mlp": (mlp, (784,), 4096),
    "cnn": (cnn, (1, 28, 28), 2048),
    "resnet18": (lambda: ResNet18(width=64), (3, 32, 32), 256),
}


def torch_vog_pass(models, x, y, batch):
    """What a user writes: eval mode, batched input gradients of the true-class logit."""
    for m in models:
        for i in range(0, len(x), batch):
            xb = x[i:i + batch].clone().requires_grad_(True)
            logits = m(xb)
            (g,) = torch.autograd.grad(logits.gather(1, y[i:i + batch, None]).sum(), xb)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--plugin", default="target/release/libvog_backend_onnx.so")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            make, shape, n = MODELS[name]
            x = torch.randn(n, *shape)
            models = []
            ck = tmp / name / "ckpt"
            ck.mkdir(parents=True)
            for k in range(a.checkpoints):
                m = make().eval()
                models.append(m)
                torch.onnx.export(m, (x[:2],), str(ck / f"epoch_{k + 1}.onnx"), input_names=["x"],
                                  output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                                  opset_version=17, dynamo=False)
            with torch.no_grad():
                y = models[-1](x).argmax(1)
            np.save(tmp / name / "x.npy", x.numpy())
            np.save(tmp / name / "y.npy", y.numpy().astype(np.int64))
            with torch.no_grad():
                pass
            torch_vog_pass(models, x[:a.batch], y[:a.batch], a.batch)  # warm-up
            t_torch = median_time(lambda: torch_vog_pass(models, x, y, a.batch), a.repeats)

            cfg = tmp / name / "vog.toml"
            cfg.write_text(
                f'version = 1\n[data]\npath = "{tmp / name / "x.npy"}"\nlabels = "{tmp / name / "y.npy"}"\n'
                f'[checkpoints]\npaths = ["{ck}"]\n[backend]\nname = "{Path(a.plugin).resolve()}"\n'
                f'batch_size = {a.batch}\n[backend.options]\nthreads = {a.threads}\n'
                f'cache_dir = "{tmp / "cache"}"\n[output]\nformats = ["csv"]\n')
            backend_s, total_s = [], []
            for r in range(a.repeats + 1):  # the first run fills the gradient-graph cache
                out = tmp / name / f"res{r}"
                subprocess.run([a.vog, "score", "-q", "-c", str(cfg), "-o", str(out)], check=True)
                t = json.loads((out / "run.json").read_text())["timings"]
                if r > 0:
                    backend_s.append(t["backend_s"])
                    total_s.append(t["score_s"])
            t_onnx = float(np.median(backend_s))
            work = n * a.checkpoints
            rows.append((name, work / t_torch, work / t_onnx, t_torch / t_onnx, float(np.median(total_s))))
    print(f"threads {a.threads}, batch {a.batch}, {a.checkpoints} checkpoints; example-checkpoints per second (median of {a.repeats})")
    print(f"{'model':10} {'pytorch':>10} {'onnx':>10} {'ratio':>7}   vog scoring loop s")
    for name, tp, to, ratio, loop in rows:
        print(f"{name:10} {tp:10.0f} {to:10.0f} {ratio:7.2f}   {loop:.2f}")


if __name__ == "__main__":
    main()
