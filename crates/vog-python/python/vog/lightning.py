"""A PyTorch Lightning callback that writes the checkpoints vog reads.

::

    import lightning as L
    from vog.lightning import VogCheckpoint

    trainer = L.Trainer(max_epochs=5, callbacks=[VogCheckpoint("checkpoints/")])
    trainer.fit(module, train_loader)
    run = vog.score("checkpoints/", x, y, backend=vog.torch.Backend(MyModule))

Works with ``lightning`` (2.x) and the older ``pytorch_lightning`` package.
"""

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the older package name
    from pytorch_lightning.callbacks import Callback

from .torch import save_checkpoint

__all__ = ["VogCheckpoint"]


class VogCheckpoint(Callback):
    """Saves the module with :func:`vog.torch.save_checkpoint` at the end of every
    ``every_n_epochs``-th training epoch (or every ``every_n_steps`` optimizer steps), with the
    global step, the epoch and the trainer's logged metrics in the manifest. Only the global-zero
    process writes.

    Parameters
    ----------
    directory:
        Where the checkpoint directory lives (see ``vog._checkpoints``).
    every_n_epochs, every_n_steps:
        How often; ``every_n_steps`` replaces the per-epoch schedule when given.
    onnx, torchscript, example_input, opset:
        Also export ONNX / TorchScript files (they need ``example_input``, a batch the module
        takes), as :func:`vog.torch.save_checkpoint` does.
    """

    def __init__(self, directory, every_n_epochs=1, every_n_steps=None, *, onnx=False,
                 torchscript=False, example_input=None, opset=17):
        super().__init__()
        if every_n_steps is None and every_n_epochs < 1:
            raise ValueError("every_n_epochs must be at least 1")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.directory = directory
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.options = dict(onnx=onnx, torchscript=torchscript, example_input=example_input, opset=opset)

    def _save(self, trainer, module):
        if not trainer.is_global_zero:
            return
        save_checkpoint(module, self.directory, trainer.global_step, epoch=trainer.current_epoch,
                        metrics=dict(trainer.callback_metrics), **self.options)

    def on_train_epoch_end(self, trainer, module):
        if self.every_n_steps is None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every_n_steps is not None and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer, module)
