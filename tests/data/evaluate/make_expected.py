#!/usr/bin/env python3
"""A committed example for `vog evaluate`, with scikit-learn's numbers as the reference.

    python tests/data/evaluate/make_expected.py

Writes run.json and scores.jsonl (a results directory as `vog score` writes it: 240 examples, 15% flagged
`meta.is_noisy`, VoG windows and panel scores that find them to varying degrees, integer scores
with many ties, a score undefined for some examples), bad_ids.txt (the same examples by id) and
expected.json: per score, AUROC (sklearn.metrics.roc_auc_score), AUPRC
(sklearn.metrics.average_precision_score) and precision@k (numpy, stable argsort), each on the
score oriented so that higher means bad.
"""
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
N, KS = 240, [10, 36, 100]
rng = np.random.default_rng(7)
noisy = rng.random(N) < 0.15
vog_all = rng.gamma(2.0, 1.0, N) + 1.5 * noisy
vog_late = rng.gamma(2.0, 1.0, N) + 0.3 * noisy
vog_all_norm = (vog_all - vog_all.mean()) / vog_all.std()
vog_late_norm = (vog_late - vog_late.mean()) / vog_late.std()
margin_mean = rng.normal(2.0, 1.0, N) - 2.0 * noisy          # lower = harder
confidence = 1 / (1 + np.exp(-margin_mean))                   # lower = harder
forgetting = rng.poisson(0.5 + 1.5 * noisy).astype(float)     # heavy ties
el2n = np.round(rng.random(N) + 0.4 * noisy, 1)               # ties too
correct_ratio = np.round(rng.random(N) * 4) / 4 - 0.5 * noisy  # lower = harder
correct_ratio = np.clip(correct_ratio, 0, 1)
undefined = rng.random(N) < 0.1                               # NaN in the file: null
columns = {
    "vog_all": vog_all, "vog_late": vog_late, "vog_all_norm": vog_all_norm,
    "vog_late_norm": vog_late_norm, "margin_mean": margin_mean, "confidence": confidence,
    "forgetting": forgetting, "el2n": el2n, "correct_ratio": correct_ratio,
}
lower = {"margin_mean", "confidence", "correct_ratio"}

with open(HERE / "scores.jsonl", "w") as f:
    for i in range(N):
        row = {
            "id": f"ex{i:03d}", "row": i, "split": "test", "true_label": i % 3, "label_used": i % 3,
            "predicted": i % 3,
            "vog": {"all": vog_all[i], "late": vog_late[i]},
            "vog_norm": {"all": vog_all_norm[i], "late": vog_late_norm[i]},
            "scores": {
                "margin_mean": margin_mean[i], "correct_ratio": None if undefined[i] else correct_ratio[i],
                "confidence": confidence[i], "forgetting": forgetting[i], "el2n": el2n[i],
            },
            "flagged": False, "has_map": False,
            "meta": {"is_noisy": bool(noisy[i]), "camera": "ab"[i % 2]},
        }
        f.write(json.dumps(row) + "\n")
manifest = {
    "format": 1,
    "tool": {"name": "vog", "version": "0.1.0"},
    "created_utc": "2026-01-01T00:00:00Z",
    "source": "backend",
    "backend": None,
    "backend_library": None,
    "config": {},
    "data": {"path": None, "rows": N, "example_shape": [2], "model_input_shape": [2], "labels": None,
             "split": "test", "metadata_missing": 0},
    "checkpoints": [],
    "scoring": {"labels": "true", "target": "logit", "channels": "mean", "vog_map_shape": [2],
                "windows": [{"name": "all", "start": 0, "end": 4}, {"name": "late", "start": 2, "end": 4}],
                "num_classes": 3, "batch_size": 64},
    "classes": {},
    "flagged": 0,
    "maps": 0,
    "warnings": [],
    "timings": {"load_s": 0.0, "hash_s": 0.0, "score_s": 0.0, "backend_s": 0.0, "reload_s": 0.0},
}
(HERE / "run.json").write_text(json.dumps(manifest, indent=2) + "\n")
(HERE / "bad_ids.txt").write_text("".join(f"ex{i:03d}\n" for i in np.flatnonzero(noisy)))

expected = {"examples": N, "bad": int(noisy.sum()), "scores": {}}
for name, values in columns.items():
    keep = ~undefined if name == "correct_ratio" else np.ones(N, bool)
    s = values[keep] * (-1 if name in lower else 1)
    y = noisy[keep]
    order = np.argsort(-s, kind="stable")
    expected["scores"][name] = {
        "harder_when": "lower" if name in lower else "higher",
        "n": int(keep.sum()),
        "bad": int(y.sum()),
        "auroc": roc_auc_score(y, s),
        "auprc": average_precision_score(y, s),
        "precision_at": {str(k): float(y[order[:k]].mean()) for k in KS},
    }
(HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {HERE}: {N} examples, {int(noisy.sum())} noisy")
