"""PyTorch as a vog backend: your model, your device, any torch >= 2.1.

::

    import vog, vog.torch

    backend = vog.torch.Backend(lambda: Net(), device="cuda")   # state_dict checkpoints
    run = vog.score("checkpoints/", x, y, backend=backend)

    vog.torch.Backend()                                         # TorchScript checkpoints

and, in a training loop, :func:`save_checkpoint` writes what :func:`vog.score` reads.
"""

from pathlib import Path

import numpy as np
import torch

from . import _checkpoints

__all__ = ["Backend", "Model", "save_checkpoint", "load_state_dict"]


def load_state_dict(path):
    """A state dict from ``path``: ``torch.save`` files (``.pt``, ``.pth``, ``.bin``; Lightning's
    ``.ckpt`` through its ``state_dict`` entry) or ``.safetensors``. Loaded on the CPU with
    ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _strip_prefix(state, module):
    """``state`` with a one-level key prefix removed when that makes it fit ``module`` (a
    Lightning module saved as ``model.*`` loaded into the bare model)."""
    wanted = set(module.state_dict().keys())
    if set(state) == wanted or not state:
        return state
    heads = {k.split(".", 1)[0] for k in state if "." in k}
    for head in heads:
        stripped = {k[len(head) + 1 :]: v for k, v in state.items() if k.startswith(head + ".")}
        if set(stripped) == wanted:
            return stripped
    return state


class Model:
    """One checkpoint on a device: ``input_gradients`` as the :class:`vog.Model` protocol says,
    with parameters frozen and the module in evaluation mode."""

    def __init__(self, module, device, output=None, dtype=torch.float32, wrt=None, input_dtype=None):
        self.module = module
        self.device = device
        self.output = output
        self.dtype = dtype
        self.input_dtype = input_dtype or dtype
        self.wrt = None
        if wrt is not None:
            target = wrt(module)
            if not isinstance(target, torch.nn.Module):
                raise TypeError(f"wrt returned a {type(target).__name__}, not a submodule of the model")
            self.wrt = target

    def input_gradients(self, x, classes, target):
        with torch.inference_mode(False), torch.enable_grad():
            xt = torch.from_numpy(x).to(self.device, self.input_dtype, non_blocking=True)
            leaf = {}
            if self.wrt is None:
                xt.requires_grad_(True)
                leaf["x"] = xt
                out = self.module(xt)
            else:
                # The submodule's output becomes the leaf the gradient is taken with respect to.
                def capture(module, inputs, output):
                    output = output.detach().requires_grad_(True)
                    leaf["x"] = output
                    return output

                handle = self.wrt.register_forward_hook(capture)
                try:
                    out = self.module(xt)
                finally:
                    handle.remove()
                if "x" not in leaf:
                    raise RuntimeError("the wrt submodule did not run in the forward pass")
            logits = self.output(out) if self.output is not None else out
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise ValueError(
                    "the model's output is not a [B, classes] tensor; pass output= to pick the "
                    "logits out of it"
                )
            if classes is None:
                chosen = logits.detach().argmax(dim=1)
            else:
                chosen = torch.from_numpy(classes).to(self.device)
            score = logits if target == "logit" else torch.softmax(logits, dim=1)
            picked = score.gather(1, chosen.view(-1, 1)).sum()
            (gradient,) = torch.autograd.grad(picked, leaf["x"])
        return (
            logits.detach().float().cpu().numpy(),
            gradient.float().cpu().numpy(),
            chosen.cpu().numpy(),
        )


class Backend:
    """Loads checkpoints into PyTorch modules on ``device``.

    Parameters
    ----------
    factory:
        A callable returning a fresh ``nn.Module`` (the architecture), into which each checkpoint's
        state dict is loaded (``.pt``/``.pth``/``.bin``/``.ckpt``/``.safetensors``). ``None``:
        checkpoints are TorchScript files (``torch.jit.save``).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``… (default: CUDA when available).
    output:
        Picks the ``[B, classes]`` logits out of the module's output when it is not that tensor
        (``output=lambda o: o.logits`` for Hugging Face models).
    dtype:
        The dtype inputs are cast to (``torch.float64`` for references).
    strict:
        Whether state dict keys must match the module exactly (a one-level prefix, such as a
        Lightning module's attribute name, is removed when that makes them match).
    wrt:
        Differentiate with respect to the output of a submodule instead of the input:
        ``wrt=lambda m: m.get_input_embeddings()`` for a text model (the gradient then has the
        embeddings' shape, ``[T, D]`` per example). Give ``input_dtype=torch.long`` for token ids.
    input_dtype:
        The dtype inputs are cast to before the model (default: ``dtype``).
    batch:
        Examples per call when ``vog.score(batch_size="auto")``. ``None``: vog's choice on the
        CPU; on other devices, batches of about 4 Mi input values (1,024 CIFAR images, 4,096
        MNIST digits, 16 ImageNet images), between 8 and 4,096, since a GPU is kept busy only by
        large batches.
    """

    name = "torch-python"
    version = torch.__version__

    def __init__(
        self,
        factory=None,
        *,
        device=None,
        output=None,
        dtype=torch.float32,
        strict=True,
        batch=None,
        wrt=None,
        input_dtype=None,
    ):
        self.factory = factory
        self.batch = batch
        self.wrt = wrt
        self.input_dtype = input_dtype
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.output = output
        self.dtype = dtype
        self.strict = strict
        self.devices = [str(self.device)]
        if factory is None:
            self.extensions = ["pt", "ts", "pth"]
            self.checkpoint_format = "torchscript"
        else:
            self.extensions = ["pt", "pth", "bin", "ckpt", "safetensors"]
            self.checkpoint_format = "state_dict"

    def __repr__(self):
        kind = "TorchScript" if self.factory is None else "state_dict"
        return f"vog.torch.Backend({kind}, device={str(self.device)!r})"

    def batch_size(self, row_shape):
        """The batch size for examples shaped ``row_shape`` (see ``batch``); ``None``: vog's."""
        if self.batch is not None:
            return int(self.batch)
        if self.device.type == "cpu":
            return None
        values = max(1, int(np.prod(row_shape)))
        b = min(4096, max(8, (4 << 20) // values))
        return 1 << (b.bit_length() - 1)

    def load(self, path):
        if self.factory is None:
            module = torch.jit.load(str(path), map_location=self.device)
        else:
            module = self.factory()
            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"factory returned a {type(module).__name__}, not an nn.Module")
            state = _strip_prefix(load_state_dict(path), module)
            module.load_state_dict(state, strict=self.strict)
            module = module.to(self.device, self.dtype)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return Model(module, self.device, self.output, self.dtype, self.wrt, self.input_dtype)


def save_checkpoint(
    model,
    directory,
    step,
    example_input=None,
    *,
    epoch=None,
    metrics=None,
    onnx=False,
    torchscript=False,
    opset=17,
):
    """Saves ``model`` as checkpoint ``step`` of ``directory`` in the layout :func:`vog.score`
    reads without settings (see ``vog._checkpoints``): its state dict always, an ONNX export
    (``onnx=True``) and/or a traced TorchScript file (``torchscript=True``) on request — both need
    ``example_input``, a batch the model takes. ``epoch`` and ``metrics`` go into the manifest.
    Returns the manifest entry."""
    directory = Path(directory)
    if (onnx or torchscript) and example_input is None:
        raise ValueError("onnx=True and torchscript=True need example_input (a batch the model takes)")
    name = f"step_{int(step):08d}"
    files = {}
    (directory / "state_dict").mkdir(parents=True, exist_ok=True)
    files["state_dict"] = f"state_dict/{name}.pt"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save(lambda p: torch.save(state, p), directory / files["state_dict"])
    was_training = model.training
    model.eval()
    try:
        example = None
        if example_input is not None:
            example = torch.as_tensor(np.asarray(example_input) if not isinstance(example_input, torch.Tensor) else example_input)
            example = example.to(next(model.parameters()).device, torch.float32)
        if torchscript:
            (directory / "torchscript").mkdir(exist_ok=True)
            files["torchscript"] = f"torchscript/{name}.pt"
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
            _atomic_save(lambda p: torch.jit.save(traced, p), directory / files["torchscript"])
        if onnx:
            (directory / "onnx").mkdir(exist_ok=True)
            files["onnx"] = f"onnx/{name}.onnx"
            _atomic_save(lambda p: _export_onnx(model, example, p, opset), directory / files["onnx"])
    finally:
        model.train(was_training)
    return _checkpoints.record(directory, step, files, epoch=epoch, metrics=metrics)


def _export_onnx(model, example, path, opset):
    kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
    )
    try:
        torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)
    except TypeError:  # torch < 2.5 has no dynamo argument
        torch.onnx.export(model, (example,), str(path), **kwargs)


def _atomic_save(save, path):
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    save(str(tmp))
    tmp.replace(path)
