#!/usr/bin/env python3
"""Reference values for vog's difficulty panel, computed with numpy from fixed logits.

    python tests/data/panel/make_panel.py

Writes logits.npy ([K, N, C] float32, checkpoints in training order), labels.npy ([N] int64) and
expected.json: per example, every panel column computed here independently of vog (float64):
margin_mean (area under the margin), loss_last, correct_ratio, confidence and variability (data
maps: mean and population std of the label's softmax probability), forgetting (correct -> incorrect
transitions in checkpoint order), el2n at checkpoint EL2N_AT (1-based), and the per-checkpoint
predicted class and margin. tests/panel.rs replays the logits through vog's engine.
"""
import json
from pathlib import Path

import numpy as np

K, N, C = 7, 60, 4
EL2N_AT = 3  # 1-based checkpoint position
HERE = Path(__file__).resolve().parent

rng = np.random.default_rng(20261129)
labels = rng.integers(0, C, size=N)
# Logits that drift towards the label over training, with noise, so predictions flip back and
# forth for some examples (forgetting events) and ties never happen.
drift = np.linspace(-1.0, 2.5, K)[:, None, None]
onehot = np.eye(C)[labels][None, :, :]
logits = (rng.normal(0, 1.2, size=(K, N, C)) + drift * onehot).astype(np.float32)

z = logits.astype(np.float64)
z_max = z.max(axis=2, keepdims=True)
log_softmax = z - z_max - np.log(np.exp(z - z_max).sum(axis=2, keepdims=True))
p = np.exp(log_softmax)
rows = np.arange(N)
p_label = p[:, rows, labels]                      # [K, N]
label_logit = z[:, rows, labels]
others = z.copy()
others[:, rows, labels] = -np.inf
margin = label_logit - others.max(axis=2)         # [K, N]
predicted = z.argmax(axis=2)                      # [K, N]
correct = predicted == labels[None, :]

expected = {
    "el2n_checkpoint": EL2N_AT,
    "margin_mean": margin.mean(axis=0).tolist(),
    "loss_last": (-log_softmax[-1, rows, labels]).tolist(),
    "correct_ratio": correct.mean(axis=0).tolist(),
    "confidence": p_label.mean(axis=0).tolist(),
    "variability": p_label.std(axis=0).tolist(),
    "forgetting": (correct[:-1] & ~correct[1:]).sum(axis=0).astype(float).tolist(),
    "el2n": np.linalg.norm(p[EL2N_AT - 1] - np.eye(C)[labels], axis=1).tolist(),
    "predicted": predicted.T.tolist(),
    "margin": margin.T.tolist(),
}
np.save(HERE / "logits.npy", logits)
np.save(HERE / "labels.npy", labels.astype(np.int64))
(HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {HERE}: {K} checkpoints, {N} examples, {C} classes")
