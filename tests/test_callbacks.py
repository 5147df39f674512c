"""PreciseBatchNorm: batch-norm statistics recomputed over the training clips before validation."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ser.callbacks import PreciseBatchNorm
from ser.data import RAVDESS
from ser.data.base import collate
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.models import CNN2D
from ser.tasks import EmotionClassifier

BATCH = 4


def fit(
    root: Path, ckpt_dir: Path, callbacks: list[L.Callback]
) -> tuple[RAVDESS, L.LightningModule]:
    L.seed_everything(0)
    data = RAVDESS(
        root=str(root), split=SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"]), batch_size=BATCH,
        max_seconds=0.5, verify=False,
    )  # fmt: skip
    model = EmotionClassifier(
        partial(CNN2D, channels=[4, 8]), data.n_classes, data.n_features, data.sample_rate,
        class_names=data.class_names, optimizer=partial(torch.optim.Adam, lr=0.01),
    )  # fmt: skip
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[checkpoint, *callbacks],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return data, model


def batch_moments(data: RAVDESS, conv: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The average over the training batches (fixed crops, no augmentation) of the first conv's
    per-batch mean and unbiased variance: what a cumulative BN average holds."""
    data.trainer = SimpleNamespace(training=False)
    dataset = data.datasets["train"]
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), BATCH):
            keys = [(i, i) for i in range(start, min(start + BATCH, len(dataset)))]
            batch = data.on_after_batch_transfer(collate([dataset[k] for k in keys]), 0)
            out = conv(batch["features"].unsqueeze(1))  # (B, C, H, W)
            means.append(out.mean(dim=(0, 2, 3)))
            variances.append(out.var(dim=(0, 2, 3), unbiased=True))
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


def test_precise_batch_norm_averages_training_clips_and_leaves_training_alone(
    ravdess_root: Path, tmp_path: Path
):
    data, precise = fit(ravdess_root, tmp_path / "precise", [PreciseBatchNorm()])
    _, plain = fit(ravdess_root, tmp_path / "plain", [])
    # Training is unchanged: the same weights step for step (no random draws taken from it).
    for (name, a), b in zip(precise.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b), name
    # The statistics are the plain average over the training clips with the final weights ...
    bn = precise.net.blocks[1]
    mean, var = batch_moments(data, precise.net.blocks[0])
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.1  # restored after the estimation
    # ... unlike the exponential average that training leaves behind,
    assert not torch.allclose(plain.net.blocks[1].running_mean, mean, atol=1e-3)
    # ... and they are what the checkpoint saved after validation holds.
    saved = torch.load(tmp_path / "precise" / "last.ckpt", weights_only=False)["state_dict"]
    assert torch.equal(saved["net.blocks.1.running_mean"], bn.running_mean)


def test_precise_batch_norm_needs_a_ser_datamodule():
    trainer = SimpleNamespace(
        sanity_checking=False, state=SimpleNamespace(fn="fit"), datamodule=None
    )
    with pytest.raises(SERError, match="DataModule"):
        PreciseBatchNorm().on_validation_start(trainer, EmotionClassifier(CNN2D, 4, 16, 16000))
    with pytest.raises(ValueError, match="max_clips"):
        PreciseBatchNorm(max_clips=0)
