"""Calibrated probabilities: temperature scaling fitted on the validation split after training.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides a net's
logits by one scalar ``T`` fitted by LBFGS to minimise the negative log-likelihood of the
validation clips. It changes no prediction (the arg max is the same), only how confident each one
is. ``T`` lives in the checkpoint's spec (``temperature``; absent: 1.0), so ``ser test``,
``ser predict`` and exports all apply it.

The same pass over the validation split fits the out-of-distribution statistics and threshold
(:mod:`ser.inference.ood`, spec key ``ood``) that ``ser predict`` marks recordings with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from ser.errors import SERError
from ser.inference.ood import OOD_KEY, feature_summary, fit_ood
from ser.spec import SPEC_KEY

log = logging.getLogger("ser")

#: The fitted temperature is kept inside this range (a degenerate validation split cannot
#: produce a zero or unbounded one).
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature ``T`` minimising the cross-entropy of ``logits / T`` against ``labels``.

    Args:
        logits: ``(N, n_classes)`` uncalibrated logits.
        labels: ``(N,)`` class indices.
    """
    if len(labels) == 0:
        raise SERError("calibration needs validation clips; the validation split is empty")
    with torch.inference_mode(False), torch.enable_grad():  # also called inside a test loop
        logits = logits.detach().double().clone()
        labels = labels.detach().long().clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        temperature = float(log_t.detach().exp())
    low, high = TEMPERATURE_RANGE
    return min(max(temperature, low), high)


def validation_logits(
    trainer: L.Trainer, module: L.LightningModule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncalibrated logits ``(N, n_classes)`` and labels ``(N,)`` of every validation clip, as
    validation sees them (centre crops, eval pipeline); with several processes, all of them."""
    return validation_outputs(trainer, module)[:2]


def validation_outputs(
    trainer: L.Trainer, module: L.LightningModule
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`validation_logits` and each clip's feature summary ``(N, 2 * n_features)``
    (:func:`ser.inference.ood.feature_summary`) of the features inference computes of it."""
    data = trainer.datamodule
    pipeline = data.pipeline.to(module.device).eval()
    training = module.training
    module.eval()
    logits, labels, summaries = [], [], []
    try:
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for batch in data.val_dataloader():  # this process's shard
                batch = module.transfer_batch_to_device(batch, module.device, 0)
                batch = pipeline.process(batch, data.n_classes)
                logits.append(module(batch["features"], batch["feature_lengths"]).float().cpu())
                labels.append(batch["label"].cpu())
                summaries.append(feature_summary(*inference_features(pipeline, batch)).cpu())
    finally:
        module.train(training)
    shard = (torch.cat(logits), torch.cat(labels), torch.cat(summaries))
    if trainer.world_size == 1:
        return shard
    gathered: list[tuple[torch.Tensor, ...]] = [None] * trainer.world_size  # type: ignore[list-item]
    torch.distributed.all_gather_object(gathered, shard)
    return tuple(torch.cat([g[i] for g in gathered]) for i in range(3))  # type: ignore[return-value]


def inference_features(pipeline, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A processed batch's features as ``ser predict`` computes them: normalised by speaker or
    corpus, a clip is normalised there by the population's statistics (its speaker unknown), and
    the out-of-distribution statistics must describe those features, not the speaker's."""
    normalization = pipeline.normalization
    if normalization is None or normalization.level == "recording":
        return batch["features"], batch["feature_lengths"]
    wave = batch["waveform"].float()
    with torch.autocast(wave.device.type, enabled=False):
        return pipeline(wave, batch["lengths"])  # no groups: what an unknown speaker gets


def calibrate_checkpoint(trainer: L.Trainer, module: L.LightningModule, path: str | Path) -> float:
    """Load ``path``'s weights into ``module``, fit the temperature and the OOD statistics on the
    validation split, set the temperature on ``module`` and write both into the checkpoint file's
    spec; return the temperature."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    logits, labels, summaries = validation_outputs(trainer, module)
    temperature = fit_temperature(logits, labels)
    module.temperature = temperature
    ood = fit_ood(summaries) if len(summaries) >= 2 else None
    if trainer.is_global_zero:
        checkpoint[SPEC_KEY]["temperature"] = temperature
        checkpoint[SPEC_KEY].pop(OOD_KEY, None)  # never the statistics of other weights
        if ood is not None:
            checkpoint[SPEC_KEY][OOD_KEY] = ood.to_spec()
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, str(path))
        log.info("calibration: temperature %.3f fitted on %d validation clips, written into %s",
                 temperature, len(labels), path)  # fmt: skip
        if ood is not None:
            log.info("out-of-distribution threshold %.3f (%.0f %% of the validation clips below "
                     "it) written into %s", ood.threshold, 100 * ood.accept, path)  # fmt: skip
    trainer.strategy.barrier("calibration")
    return temperature


class TemperatureScaling(L.Callback):
    """Fit the temperature of every checkpoint a run wrote (best and last) after fit; the CLI adds
    it (``--calibrate``, ``--recalibrate``).

    Args:
        enabled: ``False``: no fitting, and ``ser test``/``validate`` use temperature 1.
        refit: ``ser test``/``validate --ckpt_path``: first fit the temperature of that checkpoint
            on the validation split and write it into the file (e.g. a checkpoint from before
            calibration).
    """

    def __init__(self, enabled: bool = True, refit: bool = False) -> None:
        self.enabled, self.refit = enabled, refit

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.fast_dev_run:
            return
        # The monitor-less checkpoint (last.ckpt, the weights in memory) last, so that the module
        # ends with the weights it trained to.
        callbacks = sorted(trainer.checkpoint_callbacks, key=lambda c: c.monitor is None)
        paths = dict.fromkeys(
            p for c in callbacks for p in (*c.best_k_models, c.best_model_path) if p
        )
        for path in paths:
            calibrate_checkpoint(trainer, pl_module, path)

    def _evaluation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":  # validation while training: uncalibrated (T = 1)
            return
        if not self.enabled:
            pl_module.temperature = 1.0
        elif self.refit:
            if not trainer.ckpt_path:
                raise SERError("--recalibrate true needs --ckpt_path: the checkpoint to calibrate")
            calibrate_checkpoint(trainer, pl_module, trainer.ckpt_path)

    on_validation_start = _evaluation_start
    on_test_start = _evaluation_start
