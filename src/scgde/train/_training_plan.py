"""The training plan of GDE models: scvi-tools' plan with a learning-rate warm-up and an
exponential moving average (EMA) of the weights."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan


class GDETrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` with a learning-rate warm-up and weight averaging.

    - **Warm-up**: the learning rate grows linearly from ``lr / lr_warmup_steps`` to ``lr``
      over the first ``lr_warmup_steps`` optimizer steps, then stays constant (a schedule in
      steps, so it does not depend on the number of epochs planned).
    - **EMA**: an exponential moving average of the weights is kept during training, with decay
      ``min(ema_decay, (1 + step) / (10 + step))`` (short runs average over fewer steps), and
      copied into the module when training ends: the embedding, sampling and saving all use the
      averaged weights. ``ema_decay=None`` keeps the last weights.
    - A loss that is not finite stops training with a ``FloatingPointError`` naming the step.

    Parameters
    ----------
    module
        The GDE module.
    lr_warmup_steps
        Steps of the linear learning-rate warm-up (0: none).
    ema_decay
        Decay of the weight average, in [0, 1), or ``None`` for no averaging.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (``lr``, ``n_steps_kl_warmup``, ...).
    """

    def __init__(
        self,
        module,
        *,
        lr_warmup_steps: int = 200,
        ema_decay: float | None = 0.999,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        if (
            isinstance(lr_warmup_steps, bool)
            or not isinstance(lr_warmup_steps, int)
            or lr_warmup_steps < 0
        ):
            raise ValueError(f"`lr_warmup_steps` must be an integer >= 0, got {lr_warmup_steps!r}.")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1) or None, got {ema_decay!r}.")
        self.lr_warmup_steps = lr_warmup_steps
        self.ema_decay = ema_decay
        self._ema: dict[str, torch.Tensor] | None = None
        self._ema_updates = 0

    def configure_optimizers(self):
        """scvi-tools' optimizer, with the warm-up as a per-step scheduler."""
        config = super().configure_optimizers()
        if self.lr_warmup_steps and "lr_scheduler" not in config:
            warmup = self.lr_warmup_steps
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                config["optimizer"], lambda step: min(1.0, (step + 1) / warmup)
            )
            config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config

    def _averaged_state(self) -> dict[str, torch.Tensor]:
        """The floating-point parameters and buffers that the average covers."""
        return {
            name: value
            for name, value in self.module.state_dict(keep_vars=True).items()
            if value.dtype.is_floating_point
        }

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx):
        """Stop with a clear error if the loss is not finite; update the weight average."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            self.on_train_end()  # the average of the weights before this step, if any
            raise FloatingPointError(
                f"Training diverged at step {self.global_step} (epoch {self.current_epoch}): "
                f"the loss is {float(loss)}. Lower the learning rate (`lr`) or check the data "
                "for extreme values."
            )
        if self.ema_decay is None:
            return
        state = self._averaged_state()
        if self._ema is None:
            self._ema = {name: value.detach().clone() for name, value in state.items()}
            return
        self._ema_updates += 1
        decay = min(self.ema_decay, (1 + self._ema_updates) / (10 + self._ema_updates))
        for name, value in state.items():
            self._ema[name].lerp_(value.detach(), 1 - decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the weight average in Lightning checkpoints (to resume training)."""
        if self._ema is not None:
            checkpoint["gde_ema"] = {name: value.cpu() for name, value in self._ema.items()}
            checkpoint["gde_ema_updates"] = self._ema_updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the weight average of a checkpoint."""
        if "gde_ema" in checkpoint:
            device = next(self.module.parameters()).device
            self._ema = {name: value.to(device) for name, value in checkpoint["gde_ema"].items()}
            self._ema_updates = checkpoint["gde_ema_updates"]

    @torch.no_grad()
    def on_train_end(self):
        """Copy the averaged weights into the module."""
        if self._ema is None:
            return
        state = self._averaged_state()
        for name, value in self._ema.items():
            state[name].data.copy_(value)
