"""A checkpoint of the training state at the end of every epoch, to resume a stopped run."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from .._io import write_atomic

#: File name of the checkpoint in its folder.
CHECKPOINT_NAME = "last.ckpt"


class EpochCheckpoint(pl.Callback):
    """Write Lightning's checkpoint (weights, optimizer, schedules, epoch, the plan's weight
    average) to ``folder/last.ckpt`` at the end of every training epoch, atomically: a job killed
    while writing leaves the previous checkpoint intact.

    Parameters
    ----------
    folder
        Folder of the checkpoint (created if needed).
    """

    def __init__(self, folder):
        self.path = Path(folder) / CHECKPOINT_NAME

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            write_atomic(self.path, trainer.save_checkpoint)
