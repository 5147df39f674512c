"""The one metric path every model uses: UAR (headline), accuracy, macro F1, expected calibration
error, per-class recall, confusion matrix."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassRecall,
)

from ser.report import ECE_BINS


class ClassRecall(MulticlassRecall):
    """Recall of each class ``(n_classes,)``; NaN for a class the targets lack."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average="none", **kwargs)

    def compute(self) -> torch.Tensor:
        tp, _, _, fn = self._final_state()  # per class
        support = tp + fn
        return torch.where(support > 0, tp.float() / support.clamp(min=1), torch.nan)


class UnweightedAverageRecall(ClassRecall):
    """Recall averaged over the classes the targets hold, as :func:`ser.report.metrics_from_confusion`
    computes it from the confusion matrix.

    torchmetrics' macro recall also counts a class the data lacks once the model predicts it (recall
    0), so a cross-corpus test would report two UARs; here a class without support never counts.
    """

    def compute(self) -> torch.Tensor:
        recall = super().compute()
        present = ~recall.isnan()
        return recall[present].mean() if present.any() else torch.zeros((), device=recall.device)


def classification_metrics(n_classes: int, calibration: bool = True) -> MetricCollection:
    """UAR = unweighted average recall (macro recall over the classes present), accuracy (micro),
    macro F1 and, with ``calibration``, ECE = expected calibration error (the gap between confidence
    and accuracy, averaged over confidence bins; lower is better). ECE keeps every sample, so it
    cannot be computed on a process that saw none: a pooled corpus's metrics go without it."""
    metrics = {
        "uar": UnweightedAverageRecall(n_classes),
        "accuracy": MulticlassAccuracy(n_classes, average="micro"),
        "f1": MulticlassF1Score(n_classes, average="macro"),
    }
    if calibration:
        metrics["ece"] = MulticlassCalibrationError(n_classes, n_bins=ECE_BINS)
    return MetricCollection(metrics)
