"""The training callbacks write checkpoint directories that vog.score reads with no settings,
and the VoG it computes from them matches torch autograd on the same state dicts."""

import json

import numpy as np
import pytest
import torch

import vog
import vog.torch
from conftest import relative_error
from test_checkpoints import small_cnn


def reference_vog(factory, state_paths, x, classes, wrt=None, input_dtype=torch.float64):
    """VoG in float64 by hand: per checkpoint the gradient of the class logit with respect to the
    input (or a submodule's output), population std over checkpoints, mean over elements."""
    grads = []
    for p in state_paths:
        m = factory()
        m.load_state_dict(vog.torch._strip_prefix(vog.torch.load_state_dict(p), m))
        m = m.double().eval()
        xt = torch.from_numpy(x).to(input_dtype)
        if wrt is None:
            xt.requires_grad_(True)
            leaf = xt
            out = m(xt)
        else:
            box = {}

            def hook(mod, inp, o):
                o = o.detach().requires_grad_(True)
                box["leaf"] = o
                return o

            h = wrt(m).register_forward_hook(hook)
            out = m(xt)
            h.remove()
            leaf = box["leaf"]
        logits = out.logits if hasattr(out, "logits") else out
        (g,) = torch.autograd.grad(logits.gather(1, torch.from_numpy(classes)[:, None]).sum(), leaf)
        grads.append(g.numpy())
    g = np.stack(grads)
    if g.ndim == 5:  # [K, N, C, H, W]: the paper's channel mean
        g = g.mean(axis=2)
    return g.std(axis=0).reshape(len(x), -1).mean(axis=1)


def test_lightning_callback(tmp_path, cnn):
    L = pytest.importorskip("lightning")
    from vog.lightning import VogCheckpoint

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = small_cnn()

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(cnn.x), torch.from_numpy(cnn.y).long())
    trainer = L.Trainer(max_epochs=3, callbacks=[VogCheckpoint(tmp_path / "ckpt")], accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Module(), torch.utils.data.DataLoader(ds, batch_size=8))
    manifest = json.loads((tmp_path / "ckpt" / "vog-checkpoints.json").read_text())
    assert [e["epoch"] for e in manifest["checkpoints"]] == [0, 1, 2]
    assert all("train_loss" in e["metrics"] for e in manifest["checkpoints"])
    # The bare architecture loads the LightningModule's `model.*` keys.
    run = vog.score(tmp_path / "ckpt", cnn.x, cnn.y,
                    backend=vog.torch.Backend(small_cnn, device="cpu", dtype=torch.float64),
                    out=tmp_path / "r", progress=False)
    paths = [tmp_path / "ckpt" / e["files"]["state_dict"] for e in manifest["checkpoints"]]
    want = reference_vog(small_cnn, paths, cnn.x.astype(np.float64), cnn.y.astype(np.int64))
    assert relative_error(run.columns()["vog_all"], want) < 1e-6


def test_hf_trainer_callback_and_embedding_gradients(tmp_path):
    transformers = pytest.importorskip("transformers")
    from vog.hf import VogCallback

    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=3)

    def factory():
        return transformers.BertForSequenceClassification(config)

    g = np.random.default_rng(0)
    ids = g.integers(1, 40, (48, 8))
    labels = (ids[:, 0] % 3).astype(np.int64)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": torch.from_numpy(ids[i]), "labels": int(labels[i])}

    torch.manual_seed(0)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), num_train_epochs=2,
                                          per_device_train_batch_size=8, learning_rate=1e-3,
                                          report_to=[], save_strategy="no", logging_steps=2,
                                          use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=factory(), args=args, train_dataset=Data(),
                                   callbacks=[VogCallback(tmp_path / "ckpt")])
    trainer.train()
    manifest = json.loads((tmp_path / "ckpt" / "vog-checkpoints.json").read_text())
    assert [e["epoch"] for e in manifest["checkpoints"]] == [1, 2]
    assert [e["step"] for e in manifest["checkpoints"]] == [6, 12]

    wrt = lambda m: m.get_input_embeddings()  # noqa: E731
    backend = vog.torch.Backend(factory, device="cpu", dtype=torch.float64, output=lambda o: o.logits,
                                wrt=wrt, input_dtype=torch.long)
    run = vog.score(tmp_path / "ckpt", ids.astype(np.float32), labels, backend=backend, channels="none",
                    out=tmp_path / "r", progress=False)
    assert run.manifest["scoring"]["vog_map_shape"] == [8, 16]  # [tokens, hidden]
    paths = [tmp_path / "ckpt" / e["files"]["state_dict"] for e in manifest["checkpoints"]]
    want = reference_vog(factory, paths, ids, labels, wrt=wrt, input_dtype=torch.long)
    assert relative_error(run.columns()["vog_all"], want) < 1e-6
