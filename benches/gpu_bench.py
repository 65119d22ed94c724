#!/usr/bin/env python3
"""VoG on a GPU: vog's Python torch backend (`vog.torch`, the engine in-process) against a PyTorch
eager VoG loop on the same device, models, checkpoints and data. A benchmark, not a test; run by
benches/gpu.sh (which installs the wheel), figures in docs/PERFORMANCE.md.

Per model (the MNIST CNN of benches/vs_pytorch.py, a CIFAR ResNet-18 on 32x32x3):
  * PyTorch: `vs_pytorch.torch_vog` (eval mode, frozen parameters, data already on the device,
    input gradients of the label's logit, the K gradients stacked, channel mean, population std),
    swept over batch sizes; the loop time is the median of the repeats, synchronised.
  * vog: `vog.score(..., backend=vog.torch.Backend(factory, device=...))` over the same state-dict
    checkpoints and data, swept over the same batch sizes and "auto"; loop time is run.json's
    scoring time, call time the whole `vog.score` call (loading and writing results included).
  * Whole process (import torch, CUDA start-up, loading checkpoints, the computation, results):
    each side once more in a fresh process at its best batch.
  * With `--vog-bin` and plugins: vog's libtorch plugin (`--torch-plugin`, TorchScript traces of
    the same checkpoints, `device = "cuda"`) and ONNX Runtime plugin (`--onnx-plugin`, ONNX exports,
    the CUDA execution provider from `--ort-library` or the installed onnxruntime when it has one),
    each through `vog score` over the same batches; loop time is run.json's scoring time. A side
    that cannot run on this machine (a plugin that does not load against its libtorch, no CUDA
    build of ONNX Runtime, no `onnx` package to export with) is reported and skipped.
Ratios are PyTorch time / vog time (above 1: vog faster), against PyTorch's best batch.

Before timing, `--golden` checks `vog.torch` on the device in float64 against the float64 torch
references of tests/data/golden (MLP and CNN, true labels, logit target; relative error ≤ 1e-6).
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
from vs_pytorch import ResNet18, cnn, torch_vog  # noqa: E402

import vog  # noqa: E402
import vog.torch  # noqa: E402

MODELS = {
    "cnn": (cnn, (1, 28, 28), 10),
    "resnet18": (lambda: ResNet18(width=64), (3, 32, 32), 10),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def golden_check(device):
    """vog.torch in float64 on `device` against the committed float64 torch references."""
    sys.path.insert(0, str(ROOT / "tests/data/golden"))
    import make_golden  # noqa: E402

    worst = 0.0
    for name, factory in (("mlp", make_golden.make_mlp), ("cnn", make_golden.make_cnn)):
        d = ROOT / "tests/data/golden" / name
        expected = json.loads((d / "expected.json").read_text())["true/logit"]
        with tempfile.TemporaryDirectory() as tmp:
            run = vog.score(
                d / "ckpt",
                np.load(d / "x.npy"),
                np.load(d / "y.npy"),
                backend=vog.torch.Backend(factory, device=device, dtype=torch.float64),
                out=Path(tmp) / "r",
                progress=False,
            )
            got = run.columns()
        for window, values in expected.items():
            if window == "label_used":
                continue
            e = np.asarray(values["raw"])
            g = np.asarray(got[f"vog_{window}"], dtype=np.float64)
            worst = max(worst, float(np.max(np.abs(g - e) / np.abs(e))))
    print(f"golden (float64 on {device}): worst relative error {worst:.2e}", flush=True)
    if not worst <= 1e-6:
        raise SystemExit(f"golden check failed: {worst:.2e} > 1e-6")
    return worst


def make_checkpoints(name, k, directory):
    factory, _, _ = MODELS[name]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(k):
        torch.manual_seed(1000 + i)
        m = factory()
        # Spread BatchNorm statistics a little so checkpoints differ there too.
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.9, 1.1)
        p = directory / f"step_{i:03d}.pt"
        torch.save(m.state_dict(), p)
        paths.append(p)
    return paths


def load_models(name, paths, device):
    factory, _, _ = MODELS[name]
    models = []
    for p in paths:
        m = factory()
        m.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        m = m.to(device).eval()
        for q in m.parameters():
            q.requires_grad_(False)
        models.append(m)
    return models


def data(name, n):
    _, shape, classes = MODELS[name]
    g = np.random.default_rng(7)
    x = g.standard_normal((n,) + shape).astype(np.float32)
    y = g.integers(0, classes, n).astype(np.int64)
    return x, y


def median(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def pytorch_side(name, paths, x, y, device, batches, repeats):
    models = load_models(name, paths, device)
    xd, yd = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    results = {}
    for b in batches:
        def once():
            v = torch_vog(models, xd, yd, b)
            sync(device)
            return v
        once()  # warm-up: cuDNN picks its algorithms per shape
        t, v = median(once, repeats)
        results[b] = {"loop_s": t}
        last = v.double().cpu().numpy()
        print(f"  pytorch  batch {b:>5}: loop {t:7.3f} s", flush=True)
    return results, last


def vog_side(name, ckpt_dir, x, y, device, batches, repeats, work):
    factory, _, _ = MODELS[name]
    backend = vog.torch.Backend(factory, device=device)
    results, last = {}, None
    for b in batches:
        def once():
            return vog.score(ckpt_dir, x, y, backend=backend, batch_size=b, out=work / "r",
                             overwrite=True, progress=False)
        once()
        t, run = median(once, repeats)
        timings = run.manifest["timings"]
        chosen = run.manifest["scoring"]["batch_size"]
        results[str(b)] = {"call_s": t, "loop_s": timings["score_s"], "backend_s": timings["backend_s"],
                           "batch": chosen}
        last = np.asarray(run.columns()["vog_all"], dtype=np.float64)
        print(f"  vog      batch {str(b):>5} ({chosen}): loop {timings['score_s']:7.3f} s, call {t:7.3f} s, "
              f"in backend calls {timings['backend_s']:7.3f} s", flush=True)
    return results, last


def export_checkpoints(kind, name, paths, example, directory):
    """TorchScript traces (`torch`) or ONNX exports (`onnx`) of the state-dict checkpoints, on the
    CPU (the plugin moves them to its device)."""
    factory, _, _ = MODELS[name]
    directory.mkdir(parents=True, exist_ok=True)
    x = torch.from_numpy(example[:2])
    for i, p in enumerate(paths):
        m = factory()
        m.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        m.eval()
        if kind == "torch":
            torch.jit.trace(m, x).save(str(directory / f"step_{i:03d}.pt"))
        else:
            torch.onnx.export(m, (x,), str(directory / f"step_{i:03d}.onnx"), input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                              opset_version=17, dynamo=False)


def ort_library(given):
    """The ONNX Runtime library for the CUDA side: `given`, else the installed onnxruntime's when
    it offers the CUDA execution provider (onnxruntime-gpu); None otherwise."""
    if given:
        return given
    try:
        import onnxruntime
    except ImportError:
        return None
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return None
    libs = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))
    return str(libs[-1]) if libs else None


def plugin_side(kind, args, name, paths, x, y, device, batches, work):
    """`vog score` through the libtorch (`torch`) or ONNX Runtime (`onnx`) plugin on `device`. Returns
    (results per batch, VoG of the last run), or (None, reason) when this machine cannot run it."""
    plugin = args.torch_plugin if kind == "torch" else args.onnx_plugin
    options = {"device": device.type if device.index is None else f"{device.type}:{device.index}"}
    if kind == "onnx":
        if device.type == "cuda":
            library = ort_library(args.ort_library)
            if not library:
                return None, "no ONNX Runtime with the CUDA execution provider (onnxruntime-gpu) on this machine"
            options["library"] = library
        elif args.ort_library:
            options["library"] = args.ort_library
        options["cache_dir"] = str(work / "onnx-cache")
    ckpt = work / f"{kind}-ckpt"
    try:
        export_checkpoints(kind, name, paths, x, ckpt)
    except Exception as e:  # noqa: BLE001 - reported, and the other sides go on
        return None, f"cannot export the checkpoints: {e}"
    _, shape, _ = MODELS[name]
    lines = [
        "version = 1", "[data]", f'path = "{work / "x.npy"}"', f'labels = "{work / "y.npy"}"',
        f"input_shape = {list(shape)}", "[checkpoints]", f'paths = ["{ckpt}"]', "[backend]",
        f'name = "{plugin}"', "[backend.options]",
        *[f'{k} = "{v}"' for k, v in options.items()], "[output]", 'formats = ["csv"]',
    ]
    cfg = work / f"{kind}.toml"
    cfg.write_text("\n".join(lines) + "\n")
    results, last = {}, None
    for b in batches:
        out = work / f"{kind}-out"

        def once():
            p = subprocess.run([args.vog_bin, "score", "-q", "-c", str(cfg), "-o", str(out), "--overwrite",
                                "--batch-size", str(b)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
            if p.returncode != 0:
                raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}")
            return json.loads((out / "run.json").read_text())

        try:
            once()  # warm-up: cuDNN's algorithms, ONNX Runtime's cached graphs
            t, manifest = median(once, args.repeats)
        except RuntimeError as e:
            return None, f"vog score failed: {e}"
        timings = manifest["timings"]
        chosen = manifest["scoring"]["batch_size"]
        results[str(b)] = {"call_s": t, "loop_s": timings["score_s"], "backend_s": timings["backend_s"],
                           "batch": chosen}
        with open(out / "scores.csv") as f:
            header = f.readline().strip().split(",")
            col = header.index("vog_all")
            last = np.array([float(line.split(",")[col]) for line in f], dtype=np.float64)
        print(f"  {kind:8} batch {str(b):>5} ({chosen}): loop {timings['score_s']:7.3f} s, process "
              f"{t:7.3f} s", flush=True)
    return results, last


def single(args):
    """One whole process: `--single torch|vog` at one batch size (timed by the parent)."""
    device = torch.device(args.device)
    x, y = np.load(args.work / "x.npy"), np.load(args.work / "y.npy")
    ckpt = args.work / "ckpt"
    if args.single == "torch":
        models = load_models(args.model, sorted(ckpt.glob("*.pt")), device)
        xd, yd = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        v = torch_vog(models, xd, yd, args.batch).cpu().numpy()
        np.save(args.work / "torch_vog.npy", v)
    else:
        factory = MODELS[args.model][0]
        vog.score(ckpt, x, y, backend=vog.torch.Backend(factory, device=device),
                  batch_size=args.batch, out=args.work / "single", overwrite=True, progress=False)


def whole_process(args, model, side, batch, work):
    cmd = [sys.executable, __file__, "--single", side, "--model", model, "--batch", str(batch),
           "--device", args.device, "--work", str(work)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="cnn,resnet18")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batches", default="64,256,1024,4096")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--golden", action="store_true")
    ap.add_argument("--agree", type=float, default=1e-3,
                    help="largest relative VoG difference of a plugin side against PyTorch")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--vog-bin", help="the vog executable, for the plugin sides")
    ap.add_argument("--torch-plugin", help="libvog_backend_torch.so (libtorch side)")
    ap.add_argument("--onnx-plugin", help="libvog_backend_onnx.so (ONNX Runtime side)")
    ap.add_argument("--ort-library", help="ONNX Runtime library with the CUDA provider (default: "
                    "the installed onnxruntime's, when it has one)")
    ap.add_argument("--single", choices=["torch", "vog"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        return single(args)

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; vog {vog.__version__}; threads {torch.get_num_threads()}",
          flush=True)
    report = {"device": name, "torch": torch.__version__, "vog": vog.__version__, "n": args.n, "k": args.k,
              "models": {}}
    if args.golden:
        report["golden_worst_rel"] = golden_check(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            work = Path(tmp) / model
            work.mkdir()
            paths = make_checkpoints(model, args.k, work / "ckpt")
            x, y = data(model, args.n)
            np.save(work / "x.npy", x)
            np.save(work / "y.npy", y)
            print(f"{model}: {args.n} examples x {args.k} checkpoints on {device}", flush=True)
            ref, ref_vog = pytorch_side(model, paths, x, y, device, batches, args.repeats)
            mine, my_vog = vog_side(model, work / "ckpt", x, y, device, batches + ["auto"], args.repeats, work)
            best_ref = min(ref, key=lambda b: ref[b]["loop_s"])
            best_vog = min(mine, key=lambda b: mine[b]["loop_s"])
            vog_batch = mine[best_vog]["batch"]
            whole_ref = whole_process(args, model, "torch", best_ref, work)
            whole_vog = whole_process(args, model, "vog", vog_batch, work)
            agree = float(np.max(np.abs(my_vog - ref_vog) / np.maximum(np.abs(ref_vog), 1e-12)))
            entry = {
                "pytorch": ref, "vog": mine, "best_pytorch_batch": best_ref, "best_vog_batch": best_vog,
                "loop_ratio": ref[best_ref]["loop_s"] / mine[best_vog]["loop_s"],
                "call_ratio": ref[best_ref]["loop_s"] / mine[best_vog]["call_s"],
                "whole_process_s": {"pytorch": whole_ref, "vog": whole_vog},
                "whole_process_ratio": whole_ref / whole_vog,
                "max_rel_diff_vs_pytorch": agree,
            }
            for kind, plugin in (("torch", args.torch_plugin), ("onnx", args.onnx_plugin)):
                if not (plugin and args.vog_bin):
                    continue
                res, got = plugin_side(kind, args, model, paths, x, y, device, batches + ["auto"], work)
                if res is None:
                    if device.type == "cpu":
                        # On the CPU (the dry run in CI) every side must run: that is what keeps
                        # the GPU script from rotting.
                        raise SystemExit(f"{model}: the {kind} plugin side failed on the CPU: {got}")
                    print(f"  {kind}: skipped: {got}", flush=True)
                    entry[f"plugin_{kind}"] = {"skipped": got}
                    continue
                best = min(res, key=lambda b: res[b]["loop_s"])
                ratio = ref[best_ref]["loop_s"] / res[best]["loop_s"]
                diff = float(np.max(np.abs(got - ref_vog) / np.maximum(np.abs(ref_vog), 1e-12)))
                entry[f"plugin_{kind}"] = {"runs": res, "best_batch": best, "loop_ratio": ratio,
                                           "max_rel_diff_vs_pytorch": diff}
                print(f"{model}: {kind} plugin best {best} loop {res[best]['loop_s']:.3f} s → loop ratio "
                      f"{ratio:.2f}x against PyTorch's best; VoG max rel diff {diff:.1e}", flush=True)
                if not diff <= args.agree:
                    raise SystemExit(f"{model}: the {kind} plugin's VoG differs from PyTorch's by {diff:.1e}")
            report["models"][model] = entry
            print(f"{model}: PyTorch best batch {best_ref} loop {ref[best_ref]['loop_s']:.3f} s; vog best "
                  f"{best_vog} loop {mine[best_vog]['loop_s']:.3f} s → loop ratio {entry['loop_ratio']:.2f}x, "
                  f"call ratio {entry['call_ratio']:.2f}x; whole process PyTorch {whole_ref:.1f} s, vog "
                  f"{whole_vog:.1f} s → {entry['whole_process_ratio']:.2f}x; VoG max rel diff {agree:.1e}",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
