#!/usr/bin/env python3
"""vog's Python torch backend (`vog.torch`, the engine in-process) against the libtorch plugin and
a plain PyTorch VoG loop at its best batch, on the CPU with the same threads, checkpoints and data.
A benchmark, not a test: figures are ratios from one run, medians of repeats (docs/PERFORMANCE.md).

    python benches/python_backend.py --vog target/release/vog \
        --torch-plugin target/release/libvog_backend_torch.so --mnist ~/.cache/vog/mnist/package/src/digits

Per model (the MNIST CNN of benches/vs_pytorch.py on real digits when --mnist is given, a CIFAR
ResNet-18 on random 32x32x3 inputs), with K checkpoints:
  * PyTorch: `vs_pytorch.torch_vog` (frozen parameters, eval mode) swept over batch sizes; loop time.
  * plugin: `vog score` with the libtorch plugin (TorchScript checkpoints) at vog's automatic batch
    and at PyTorch's best; scoring-loop time from run.json, whole process timed.
  * vog.torch: `vog.score` over the state dicts of the same checkpoints, same batches; loop time
    from run.json; time spent per batch in Python outside torch's forward and backward (the
    conversions at the boundary), measured by timing a copy of the backend's call in segments.
  * Whole process for vog.torch and PyTorch: a fresh interpreter (importing torch) per run.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
from vs_pytorch import ResNet18, cnn, load_mnist, torch_vog  # noqa: E402

import vog  # noqa: E402
import vog.torch  # noqa: E402

MODELS = {"cnn": (cnn, (1, 28, 28), 4096), "resnet18": (lambda: ResNet18(width=64), (3, 32, 32), 256)}


class TimedModel(vog.torch.Model):
    """vog.torch.Model with the call timed in segments: in (to a tensor), compute, out (to NumPy)."""

    segments = {"in": 0.0, "compute": 0.0, "out": 0.0, "calls": 0}

    def input_gradients(self, x, classes, target):
        s = TimedModel.segments
        t0 = time.perf_counter()
        xt = torch.from_numpy(x).to(self.device, self.input_dtype).requires_grad_(True)
        chosen = torch.from_numpy(classes) if classes is not None else None
        t1 = time.perf_counter()
        logits = self.module(xt)
        if chosen is None:
            chosen = logits.detach().argmax(1)
        score = logits if target == "logit" else torch.softmax(logits, 1)
        (g,) = torch.autograd.grad(score.gather(1, chosen.view(-1, 1)).sum(), xt)
        t2 = time.perf_counter()
        out = (logits.detach().float().numpy(), g.float().numpy(), chosen.numpy())
        t3 = time.perf_counter()
        s["in"] += t1 - t0
        s["compute"] += t2 - t1
        s["out"] += t3 - t2
        s["calls"] += 1
        return out


class TimedBackend(vog.torch.Backend):
    def load(self, path):
        m = super().load(path)
        return TimedModel(m.module, m.device, m.output, m.dtype)


def median(values):
    return float(np.median(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--torch-plugin", default="target/release/libvog_backend_torch.so")
    ap.add_argument("--mnist", default="")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--batches", default="64,256,1024")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="cnn,resnet18")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batches.split(",")]
    report = {"threads": a.threads, "checkpoints": a.checkpoints, "torch": torch.__version__, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            make, shape, n = MODELS[name]
            d = tmp / name
            (d / "state").mkdir(parents=True)
            (d / "script").mkdir()
            if a.mnist and name == "cnn":
                x, _ = load_mnist(a.mnist, n)
                x = x.reshape(n, *shape)
            else:
                x = torch.randn(n, *shape)
            torch.manual_seed(0)
            models = [make().eval() for _ in range(a.checkpoints)]
            for m in models:
                for p in m.parameters():
                    p.requires_grad_(False)
            for k, m in enumerate(models, start=1):
                torch.save(m.state_dict(), d / "state" / f"epoch_{k}.pt")
                torch.jit.trace(m, x[:2]).save(str(d / "script" / f"epoch_{k}.pt"))
            with torch.no_grad():
                y = models[-1](x).argmax(1)
            np.save(d / "x.npy", x.numpy())
            np.save(d / "y.npy", y.numpy().astype(np.int64))
            xn, yn = x.numpy(), y.numpy().astype(np.int64)
            work = n * a.checkpoints
            entry = {"examples": n, "pytorch": {}, "plugin": {}, "vog_torch": {}}

            for b in batches:
                torch_vog(models, x[:b], y[:b], b)
                times = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    torch_vog(models, x, y, b)
                    times.append(time.perf_counter() - t)
                entry["pytorch"][b] = median(times)
                print(f"{name} pytorch batch {b}: {entry['pytorch'][b]:.3f} s", flush=True)
            best = min(entry["pytorch"], key=entry["pytorch"].get)

            plugin_batches = ["auto", best]
            if a.torch_plugin:
                for b in plugin_batches:
                    loops, walls = [], []
                    for r in range(a.repeats + 1):
                        cfg = d / "plugin.toml"
                        cfg.write_text(
                            f'version = 1\n[data]\npath = "{d / "x.npy"}"\nlabels = "{d / "y.npy"}"\n'
                            f'[checkpoints]\npaths = ["{d / "script"}"]\n[backend]\nname = "{a.torch_plugin}"\n'
                            + ("" if b == "auto" else f"batch_size = {b}\n")
                            + f"[backend.options]\nthreads = {a.threads}\n"
                        )
                        t = time.perf_counter()
                        subprocess.run([a.vog, "score", "-q", "-c", str(cfg), "-o", str(d / "p"), "--overwrite"],
                                       check=True)
                        wall = time.perf_counter() - t
                        m = json.loads((d / "p" / "run.json").read_text())
                        if r:
                            loops.append(m["timings"]["score_s"])
                            walls.append(wall)
                    entry["plugin"][str(b)] = {"loop_s": median(loops), "whole_s": median(walls),
                                               "batch": m["scoring"]["batch_size"]}
                    print(f"{name} plugin batch {b} ({m['scoring']['batch_size']}): loop {median(loops):.3f} s, "
                          f"whole {median(walls):.3f} s", flush=True)

            for b in ["auto", best] + ([entry["plugin"]["auto"]["batch"]] if a.torch_plugin else []):
                if str(b) in entry["vog_torch"]:
                    continue
                backend = TimedBackend(make, device="cpu")
                loops, calls = [], []
                for r in range(a.repeats + 1):
                    TimedModel.segments.update({"in": 0.0, "compute": 0.0, "out": 0.0, "calls": 0})
                    run = vog.score(d / "state", xn, yn, backend=backend, batch_size=b, out=d / "v",
                                    overwrite=True, progress=False)
                    if r:
                        loops.append(run.manifest["timings"]["score_s"])
                        c = dict(TimedModel.segments)
                        n_calls = max(c["calls"], 1)
                        # Per run: the engine's time in backend calls minus the Python segments.
                        c["crossing"] = (run.manifest["timings"]["backend_s"] - c["in"] - c["compute"]
                                         - c["out"]) / n_calls
                        c["boundary"] = (c["in"] + c["out"]) / n_calls
                        c["compute"] /= n_calls
                        calls.append(c)
                seg = {k: median([c[k] for c in calls]) for k in ("compute", "boundary", "crossing")}
                chosen = run.manifest["scoring"]["batch_size"]
                boundary, outside = seg["boundary"], seg["crossing"]
                entry["vog_torch"][str(b)] = {"loop_s": median(loops), "batch": chosen,
                                              "python_boundary_ms_per_batch": 1e3 * boundary,
                                              "engine_side_ms_per_batch": 1e3 * outside,
                                              "compute_ms_per_batch": 1e3 * seg["compute"]}
                print(f"{name} vog.torch batch {b} ({chosen}): loop {median(loops):.3f} s; per batch: compute "
                      f"{entry['vog_torch'][str(b)]['compute_ms_per_batch']:.1f} ms, numpy<->torch "
                      f"{1e3 * boundary:.2f} ms, crossing into Python and back {1e3 * outside:.2f} ms", flush=True)

            # Whole processes: a fresh interpreter for vog.torch and for the PyTorch loop.
            whole = {}
            for side in ("vog", "pytorch"):
                code = (
                    "import sys, numpy as np, torch\n"
                    f"sys.path.insert(0, {str(ROOT / 'benches')!r})\n"
                    "from python_backend import MODELS\nfrom vs_pytorch import torch_vog\n"
                    f"torch.set_num_threads({a.threads})\n"
                    f"make = MODELS[{name!r}][0]\nd = {str(d)!r}\n"
                    "x, y = np.load(d + '/x.npy'), np.load(d + '/y.npy')\n"
                )
                if side == "vog":
                    code += ("import vog, vog.torch\n"
                             f"vog.score(d + '/state', x, y, backend=vog.torch.Backend(make, device='cpu'), "
                             f"batch_size={best}, out=d + '/w', overwrite=True, progress=False)\n")
                else:
                    code += ("import glob\nms = []\n"
                             "for p in sorted(glob.glob(d + '/state/*.pt')):\n"
                             "    m = make(); m.load_state_dict(torch.load(p, weights_only=True)); m.eval()\n"
                             "    [q.requires_grad_(False) for q in m.parameters()]; ms.append(m)\n"
                             f"torch_vog(ms, torch.from_numpy(x), torch.from_numpy(y), {best})\n")
                times = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    subprocess.run([sys.executable, "-c", code], check=True)
                    times.append(time.perf_counter() - t)
                whole[side] = median(times)
            entry["whole_s"] = whole
            p_best = entry["pytorch"][best]
            v_best = min(v["loop_s"] for v in entry["vog_torch"].values())
            line = (f"{name}: vog.torch {work / v_best:.0f} ex-ckpt/s = {p_best / v_best:.2f}x PyTorch at its best "
                    f"batch {best}")
            if a.torch_plugin:
                pl = min(v["loop_s"] for v in entry["plugin"].values())
                entry["vs_plugin"] = pl / v_best
                line += f", {pl / v_best:.2f}x the libtorch plugin"
            entry["vs_pytorch"] = p_best / v_best
            line += f"; whole process vog.torch {whole['vog']:.1f} s, PyTorch {whole['pytorch']:.1f} s"
            print(line, flush=True)
            report["models"][name] = entry
    if a.out:
        a.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
