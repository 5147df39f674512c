"""The one metric path every model uses: UAR (headline), accuracy, macro F1, confusion matrix."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall


def classification_metrics(n_classes: int) -> MetricCollection:
    """UAR = unweighted average recall (macro recall), accuracy (micro) and macro F1."""
    return MetricCollection(
        {
            "uar": MulticlassRecall(n_classes, average="macro"),
            "accuracy": MulticlassAccuracy(n_classes, average="micro"),
            "f1": MulticlassF1Score(n_classes, average="macro"),
        }
    )
