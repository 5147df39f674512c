"""The one metric path every model uses: UAR (headline), accuracy, macro F1, confusion matrix."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall


class UnweightedAverageRecall(MulticlassRecall):
    """Recall averaged over the classes the targets hold, as :func:`ser.report.metrics_from_confusion`
    computes it from the confusion matrix.

    torchmetrics' macro recall also counts a class the data lacks once the model predicts it (recall
    0), so a cross-corpus test would report two UARs; here a class without support never counts.
    """

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average="none", **kwargs)

    def compute(self) -> torch.Tensor:
        tp, _, _, fn = self._final_state()  # per class
        support = tp + fn
        present = support > 0
        if not present.any():
            return torch.tensor(0.0, device=tp.device)
        return (tp[present].float() / support[present]).mean()


def classification_metrics(n_classes: int) -> MetricCollection:
    """UAR = unweighted average recall (macro recall over the classes present), accuracy (micro)
    and macro F1."""
    return MetricCollection(
        {
            "uar": UnweightedAverageRecall(n_classes),
            "accuracy": MulticlassAccuracy(n_classes, average="micro"),
            "f1": MulticlassF1Score(n_classes, average="macro"),
        }
    )
