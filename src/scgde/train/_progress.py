"""Training progress as plain lines, for logs of non-interactive runs (cluster jobs, CI)."""

from __future__ import annotations

import sys
import time

import lightning.pytorch as pl


def interactive() -> bool:
    """Whether progress bars render: a terminal on stderr, or a Jupyter kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and "IPKernelApp" in getattr(shell, "config", {}):
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class LineProgress(pl.Callback):
    """Print a line after the first epoch, then one per ``every`` percent of the epochs, instead
    of a progress bar.

    A progress bar redraws itself many times a second; in a log file each redraw is kept
    (megabytes for one run). This prints ``epoch 12/120 (10%) · 34 s · train loss 1.23``.
    """

    def __init__(self, every: int = 10, stream=None):
        self.every = every
        self.stream = stream
        self._start = None
        self._printed = -1

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()
        self._printed = -1

    def on_train_epoch_end(self, trainer, pl_module):
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs or 0
        percent = int(100 * epoch / total) if total else 0
        step = percent // self.every
        if step == self._printed and epoch != total:
            return
        self._printed = step
        metrics = trainer.callback_metrics
        loss = metrics.get("train_loss_epoch", metrics.get("train_loss"))
        line = f"epoch {epoch}/{total} ({percent}%) · {time.perf_counter() - self._start:.0f} s"
        if loss is not None:
            line += f" · train loss {float(loss):.4g}"
        print(line, file=self.stream or sys.stderr, flush=True)
