"""A Hugging Face ``transformers`` callback that writes the checkpoints vog reads.

::

    from transformers import Trainer
    from vog.hf import VogCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[VogCallback("checkpoints/")])
    trainer.train()
    backend = vog.torch.Backend(lambda: AutoModelForImageClassification.from_config(config),
                                output=lambda o: o.logits)
    run = vog.score("checkpoints/", pixels, labels, backend=backend)
"""

from transformers import TrainerCallback

from .torch import save_checkpoint

__all__ = ["VogCallback"]


class VogCallback(TrainerCallback):
    """Saves the model with :func:`vog.torch.save_checkpoint` at the end of every epoch (or
    every ``every_n_steps`` optimizer steps), with the global step, the epoch and the latest
    logged metrics in the manifest. Only the main process writes.

    Parameters
    ----------
    directory:
        Where the checkpoint directory lives (see ``vog._checkpoints``).
    every_n_steps:
        Save every this many optimizer steps instead of once per epoch.
    """

    def __init__(self, directory, every_n_steps=None):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.directory = directory
        self.every_n_steps = every_n_steps

    def _save(self, state, model):
        if not state.is_world_process_zero or model is None:
            return
        metrics = {}
        for entry in state.log_history:
            metrics.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
        epoch = None if state.epoch is None else int(round(state.epoch))
        save_checkpoint(model, self.directory, state.global_step, epoch=epoch, metrics=metrics)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is None:
            self._save(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._save(state, model)
