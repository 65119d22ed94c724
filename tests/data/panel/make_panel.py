#!/usr/bin/env python3
"""Reference values for vog's difficulty panel, computed with numpy from fixed logits.

    python tests/data/panel/make_panel.py

Writes logits.npy ([K, N, C] float32, checkpoints in training order), labels.npy ([N] int64) and
expected.json: per example, every panel column computed here independently of vog (float64):
margin_mean (area under the margin), loss_last, correct_ratio, confidence and variability (data
maps: mean and population std of the label's softmax probability), forgetting (correct -> incorrect
transitions in checkpoint order), el2n at checkpoint EL2N_AT (1-based), the label-free msp_last,
margin_last, entropy_last (the last checkpoint's softmax) and pred_changes, the per-checkpoint
predicted class and margin, and under "unlabelled" the label-based columns taken against the last
checkpoint's prediction (what vog uses when no labels are given). tests/panel.rs replays the logits through vog's engine.
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
p_top = -np.sort(-p, axis=2)                      # [K, N, C], descending
used = predicted[-1]                              # the label used without true labels
p_used = p[:, rows, used]
others_u = z.copy()
others_u[:, rows, used] = -np.inf
margin_u = z[:, rows, used] - others_u.max(axis=2)

expected = {
    "el2n_checkpoint": EL2N_AT,
    "margin_mean": margin.mean(axis=0).tolist(),
    "loss_last": (-log_softmax[-1, rows, labels]).tolist(),
    "correct_ratio": correct.mean(axis=0).tolist(),
    "confidence": p_label.mean(axis=0).tolist(),
    "variability": p_label.std(axis=0).tolist(),
    "forgetting": (correct[:-1] & ~correct[1:]).sum(axis=0).astype(float).tolist(),
    "el2n": np.linalg.norm(p[EL2N_AT - 1] - np.eye(C)[labels], axis=1).tolist(),
    # Label-free: the last checkpoint's softmax, and argmax changes across checkpoints.
    "msp_last": (1.0 - p_top[-1, :, 0]).tolist(),
    "margin_last": (p_top[-1, :, 1] - p_top[-1, :, 0]).tolist(),
    "entropy_last": (-(p[-1] * log_softmax[-1]).sum(axis=1)).tolist(),
    "pred_changes": (predicted[1:] != predicted[:-1]).sum(axis=0).astype(float).tolist(),
    # Without labels the reference class is the prediction at the last checkpoint: the panel's
    # label-based scores are taken against it, correct_ratio and forgetting are undefined.
    "unlabelled": {
        "margin_mean": margin_u.mean(axis=0).tolist(),
        "loss_last": (-log_softmax[-1, rows, used]).tolist(),
        "confidence": p_used.mean(axis=0).tolist(),
        "variability": p_used.std(axis=0).tolist(),
        "el2n": np.linalg.norm(p[EL2N_AT - 1] - np.eye(C)[used], axis=1).tolist(),
    },
    "predicted": predicted.T.tolist(),
    "margin": margin.T.tolist(),
}
np.save(HERE / "logits.npy", logits)
np.save(HERE / "labels.npy", labels.astype(np.int64))
(HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {HERE}: {K} checkpoints, {N} examples, {C} classes")
