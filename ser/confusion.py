"""Per-class and overall figures of a confusion matrix (rows = true class), one definition for
the test report, ``ser cv``, the baseline, abstention and fairness."""

from __future__ import annotations

import numpy as np


def metrics_from_confusion(confusion: np.ndarray, class_names: list[str]) -> dict:
    """Per-class recall, precision, F1 and support, and UAR / accuracy / macro F1, from counts.

    A figure of nothing is absent (``None``), never 0: recall and F1 of a class without clips,
    precision of a class never predicted, and every overall figure of an empty set.

    Args:
        confusion: ``(n_classes, n_classes)`` counts, rows = true class, columns = predicted.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    total = int(confusion.sum())

    def defined(values: np.ndarray, where: np.ndarray) -> list[float | None]:
        return [float(v) if ok else None for v, ok in zip(values, where, strict=True)]

    per_class = zip(class_names, defined(recall, present), defined(precision, predicted > 0),
                    defined(f1, present), support, strict=True)  # fmt: skip
    return {
        "uar": float(recall[present].mean()) if present.any() else None,
        "accuracy": float(tp.sum() / total) if total else None,
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "n_clips": total,
        "absent_classes": [name for name, n in zip(class_names, support, strict=True) if not n],
        "per_class": {
            name: {"recall": r, "precision": p, "f1": f, "support": int(s)}
            for name, r, p, f, s in per_class
        },
    }
