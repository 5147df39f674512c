"""Callbacks that ``ser`` adds to the Trainer."""

from __future__ import annotations

import logging
import time

import lightning as L

log = logging.getLogger("ser")


class EpochSummary(L.Callback):
    """Log one line per epoch (losses, UAR, accuracy, seconds) for runs without a progress bar."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = " ".join(
            f"{k} {float(metrics[k]):.4f}"
            for k in ("train/loss", "val/loss", "val/uar", "val/accuracy")
            if k in metrics
        )
        log.info(
            "epoch %d: %s (%.1f s)", trainer.current_epoch, shown, time.perf_counter() - self._start
        )
