"""Fault injection for tests: importable by a `ser fit` subprocess as ``tests.faults.KillAtStep``."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL the process when training reaches global step ``step`` (no cleanup, like an OOM kill).

    Args:
        step: the optimizer step before which the process dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
