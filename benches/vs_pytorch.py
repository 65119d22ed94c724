#!/usr/bin/env python3
"""Throughput of VoG's per-checkpoint work (forward + input gradient) with vog's ONNX Runtime and
libtorch backends, against PyTorch eager doing the same work the way a user would write it, on the
same models, checkpoints, batch size and thread count. A benchmark, not a test: figures are ratios
from one run, medians of repeats.

    python benches/vs_pytorch.py --vog target/release/vog \
        --onnx target/release/libvog_backend_onnx.so --torch target/release/libvog_backend_torch.so

Either plugin may be left out (`--onnx ''`). The ONNX backend needs ORT_DYLIB_PATH (ONNX Runtime
1.31.1); both need the packages of scripts/requirements-test.txt. The vog figure is the backend
time recorded in run.json (forward + backward + copies, without reading data or writing results).
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


def vog_backend_seconds(vog, cfg, out_dir, repeats):
    """Median backend seconds of `vog score` over `repeats` runs, after one warm-up run (which also
    fills the ONNX backend's gradient-graph cache)."""
    backend_s = []
    for r in range(repeats + 1):
        out = out_dir / f"res{r}"
        subprocess.run([vog, "score", "-q", "-c", str(cfg), "-o", str(out)], check=True)
        if r > 0:
            backend_s.append(json.loads((out / "run.json").read_text())["timings"]["backend_s"])
    return float(np.median(backend_s))


def write_config(path, data_dir, ckpt_dir, plugin, batch, options):
    opts = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    path.write_text(
        f'version = 1\n[data]\npath = "{data_dir / "x.npy"}"\nlabels = "{data_dir / "y.npy"}"\n'
        f'[checkpoints]\npaths = ["{ckpt_dir}"]\n[backend]\nname = "{Path(plugin).resolve()}"\n'
        f'batch_size = {batch}\n[backend.options]\n{opts}[output]\nformats = ["csv"]\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--onnx", default="target/release/libvog_backend_onnx.so", help="ONNX plugin ('' to skip)")
    ap.add_argument("--torch", default="target/release/libvog_backend_torch.so", help="libtorch plugin ('' to skip)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backends = [b for b in ("onnx", "torch") if getattr(a, b)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            make, shape, n = MODELS[name]
            x = torch.randn(n, *shape)
            d = tmp / name
            models = [make().eval() for _ in range(a.checkpoints)]
            for b in backends:
                (d / b).mkdir(parents=True)
            for k, m in enumerate(models, start=1):
                if "onnx" in backends:
                    torch.onnx.export(m, (x[:2],), str(d / "onnx" / f"epoch_{k}.onnx"), input_names=["x"],
                                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                                      opset_version=17, dynamo=False)
                if "torch" in backends:
                    torch.jit.trace(m, x[:2]).save(str(d / "torch" / f"epoch_{k}.pt"))
            with torch.no_grad():
                y = models[-1](x).argmax(1)
            np.save(d / "x.npy", x.numpy())
            np.save(d / "y.npy", y.numpy().astype(np.int64))
            torch_vog_pass(models, x[:a.batch], y[:a.batch], a.batch)  # warm-up
            t_torch = median_time(lambda: torch_vog_pass(models, x, y, a.batch), a.repeats)
            work = n * a.checkpoints
            row = {"model": name, "pytorch": work / t_torch}
            for b in backends:
                options = {"threads": a.threads}
                if b == "onnx":
                    options["cache_dir"] = str(tmp / "cache")
                cfg = d / f"{b}.toml"
                write_config(cfg, d, d / b, getattr(a, b), a.batch, options)
                t = vog_backend_seconds(a.vog, cfg, d / f"out-{b}", a.repeats)
                row[b] = work / t
            rows.append(row)
    print(f"threads {a.threads}, batch {a.batch}, {a.checkpoints} checkpoints; "
          f"example-checkpoints per second (median of {a.repeats}); ratio = vog / pytorch eager")
    head = f"{'model':10} {'pytorch':>10}" + "".join(f" {b:>10} {b + ' ratio':>11}" for b in backends)
    print(head)
    for r in rows:
        line = f"{r['model']:10} {r['pytorch']:10.0f}"
        for b in backends:
            line += f" {r[b]:10.0f} {r[b] / r['pytorch']:11.2f}"
        print(line)


if __name__ == "__main__":
    main()
