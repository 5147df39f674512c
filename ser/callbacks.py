"""Callbacks that ``ser`` adds to the Trainer."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from ser.data.base import SERDataModule
from ser.data.dataset import collate
from ser.errors import SERError

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


class DropEmptyRun(L.Callback):
    """Remove the run folder of a run that failed before its first training step and left
    nothing in it but TensorBoard's event files, so that ``lightning_logs/`` lists real runs."""

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero or trainer.global_step > 0 or trainer.log_dir is None:
            return
        folder = Path(trainer.log_dir)
        files = [f for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
        if files and all(f.name.startswith("events.out.tfevents.") for f in files):
            shutil.rmtree(folder, ignore_errors=True)
            for parent in (folder.parent, folder.parent.parent):  # <name>/, lightning_logs/
                try:
                    parent.rmdir()  # only when nothing else is in it
                except OSError:
                    break


class PreciseBatchNorm(L.Callback):
    """Re-estimate every batch-norm layer's statistics with the current weights before each
    validation ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm").

    A BN layer's running mean and variance are an exponential average over the last training
    batches, taken while the weights were still moving; with a few hundred clips and a high learning
    rate they lag the weights enough to swing validation UAR by 10+ points from epoch to epoch.
    Here they are recomputed as a plain average over the training clips (fixed crops, no
    augmentation: the inputs evaluation sees) with the weights being validated, so validation,
    the checkpoints saved after it, ``ser test`` and ``ser predict`` all use them. Training itself
    is unchanged (BN uses batch statistics while training). Nets without batch norm are left alone.

    Args:
        max_clips: training clips to estimate from, spread evenly over the split (``None``: all).
    """

    def __init__(self, max_clips: int | None = None) -> None:
        if max_clips is not None and max_clips < 1:
            raise ValueError(f"max_clips={max_clips} must be positive")
        self.max_clips = max_clips

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        norms = [m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        data = trainer.datamodule
        if not isinstance(data, SERDataModule):
            raise SERError("PreciseBatchNorm needs a ser DataModule (the clips of its train split)")
        dataset = data.datasets["train"]
        n = len(dataset)
        n_clips = n if self.max_clips is None else min(self.max_clips, n)
        # Spread over the split (clips come in speaker order); a clip's index seeds its crop: the
        # same crops every epoch, and no draws from the global generators.
        keys = [(i, i) for i in (k * n // n_clips for k in range(n_clips))]
        saved = [(m, m.training, m.momentum) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches, not an exponential one
            m.train()
        pipeline = data.pipeline.to(pl_module.device).eval()  # the inputs evaluation sees
        # With several processes, each runs every world_size-th batch of the one-process list.
        starts = range(0, n_clips, data.batch_size)[trainer.global_rank :: trainer.world_size]
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for start in starts:
                    batch = collate([dataset[k] for k in keys[start : start + data.batch_size]])
                    batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                    batch = pipeline.process(batch, data.n_classes)
                    pl_module(batch["features"], batch["feature_lengths"])
            if trainer.world_size > 1:
                for m in norms:
                    average_across_processes(m, trainer.strategy)
        finally:
            for m, training, momentum in saved:
                m.train(training)
                m.momentum = momentum


def average_across_processes(norm: nn.modules.batchnorm._BatchNorm, strategy) -> None:
    """Turn each process's cumulative average over its batches into the average over all of them
    (what one process running every batch holds), weighting by the batches each one ran."""
    count = norm.num_batches_tracked.to(norm.running_mean.dtype)
    total = strategy.reduce(count.clone(), reduce_op="sum")
    for stat in (norm.running_mean, norm.running_var):
        stat.copy_(strategy.reduce(stat * count, reduce_op="sum") / total)
    norm.num_batches_tracked.copy_(total.to(norm.num_batches_tracked.dtype))


class StopOnNonFiniteLoss(L.Callback):
    """Stop training at the first NaN or infinite loss, before its backward pass changes the
    weights, with one error naming the step, the batch's files and the likely cause: a run that
    went on would train on NaN to the end and report a number computed from nothing.

    With several processes (DDP) every process stops at that step: they agree on it (one
    collective per step) before any backward pass, so none waits forever in a gradient exchange
    that a stopped process never joins."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch, self._batch_idx = batch, batch_idx

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        everywhere = finite
        if trainer.world_size > 1:
            everywhere = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if everywhere:
            return
        if finite:  # another process's loss: it names its batch and the cause
            raise SERError(
                f"training stopped: the loss is not finite in another of the {trainer.world_size} "
                f"processes at step {trainer.global_step} (epoch {trainer.current_epoch}); its "
                "error names the batch's files and the likely cause"
            )
        batch = getattr(self, "_batch", None) or {}
        files = list(batch.get("path", []) if isinstance(batch, dict) else [])
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise SERError(
            f"training stopped: the loss is {float(loss.detach().float().mean())} at step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx}"
            f"{'; files ' + shown if shown else ''}); likely cause: {likely_cause(pl_module, batch)}"
        )


def likely_cause(pl_module: L.LightningModule, batch: dict) -> str:
    """Why a loss went NaN, from what can be seen: the batch's audio or features, the class
    weights of its labels, the learning rate."""
    for key in ("waveform", "features"):
        value = batch.get(key) if isinstance(batch, dict) else None
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                return f"the batch's {key} hold NaN or infinite values (check those files)"
    weights = getattr(pl_module, "loss_weights", None)
    labels = batch.get("label") if isinstance(batch, dict) else None
    if isinstance(weights, torch.Tensor) and isinstance(labels, torch.Tensor) and labels.ndim == 1:
        if float(weights[labels.long()].sum()) == 0:
            return (
                "the class weights of the batch's classes sum to 0 (--model.class_weights; "
                "a class with weight 0 contributes nothing, a batch of only such classes is 0/0)"
            )
    optimizers = pl_module.trainer.optimizers if pl_module._trainer is not None else []
    rates = [g.get("lr") for o in optimizers for g in o.param_groups if g.get("lr") is not None]
    lr = f" ({max(rates):g})" if rates else ""
    return (
        f"the learning rate{lr} is too high for this net or data: lower it "
        "(--model.optimizer.init_args.lr) or clip gradients (--trainer.gradient_clip_val 1.0)"
    )
