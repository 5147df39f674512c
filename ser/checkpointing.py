"""How runs write checkpoints: atomically, and a ``last.ckpt`` after every epoch to resume from."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ser.io import atomic_path
from ser.safe import load_tensors


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it into place.

    A process killed while writing leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(
        self, path: str, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read a checkpoint Lightning resumes or tests from with ``weights_only=True``, whatever
        the caller asked: a pickle's code is refused, never run (:func:`ser.safe.load_tensors`)."""
        return load_tensors(path, f"checkpoint {path}")


def last_checkpoint() -> ModelCheckpoint:
    """``checkpoints/last.ckpt``, rewritten after every epoch (resume with ``--ckpt_path`` on it).

    Lightning's ``save_last`` only writes when a best checkpoint is written, so a run resumed from
    it could lose many epochs; this one has no monitor and keeps the latest epoch.
    """
    return ModelCheckpoint(filename="last", enable_version_counter=False)


def best_checkpoint() -> ModelCheckpoint:
    """``checkpoints/best-epochNN-uarX.XXX.ckpt``: the epoch with the highest validation UAR."""
    return ModelCheckpoint(
        monitor="val/uar", mode="max", filename="best-epoch{epoch:02d}-uar{val/uar:.3f}",
        auto_insert_metric_name=False,
    )  # fmt: skip
