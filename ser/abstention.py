"""Selective prediction: how accurate the model is on the clips it is most confident about.

A model that may answer "uncertain" (``ser predict --min-confidence P``) keeps the clips whose top
class is at least ``P`` probable. Sorting the test clips by that confidence, the risk-coverage
curve gives, for each share of clips answered (the coverage), the accuracy and UAR on them and
the confidence ``P`` that keeps that share: the table a user reads ``P`` off.
"""

from __future__ import annotations

import numpy as np

from ser.confusion import metrics_from_confusion

#: Coverages of the report's table.
COVERAGES = (1.0, 0.9, 0.8, 0.5)


def answered(probabilities: np.ndarray, labels: np.ndarray, n: int, class_names: list[str]) -> dict:
    """Accuracy, UAR and the lowest confidence kept when the ``n`` most confident clips answer.

    Args:
        probabilities: ``(N, n_classes)`` calibrated class probabilities.
        labels: ``(N,)`` true class indices.
    """
    confidence = probabilities.max(axis=1)
    order = np.argsort(-confidence, kind="stable")[:n]  # the n most confident clips
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels[order], probabilities[order].argmax(axis=1)), 1)
    metrics = metrics_from_confusion(confusion, class_names)
    return {
        "coverage": n / len(labels),
        "n_clips": int(n),
        "min_confidence": float(confidence[order].min()),
        "accuracy": metrics["accuracy"],
        "uar": metrics["uar"],
    }


def risk_coverage(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    coverages: tuple[float, ...] = COVERAGES,
) -> list[dict]:
    """One :func:`answered` row per coverage (the most confident ``ceil(coverage * N)`` clips)."""
    n = len(labels)
    return [
        answered(probabilities, labels, max(1, int(np.ceil(c * n - 1e-9))), class_names)
        for c in coverages
    ]


def format_risk_coverage(table: list[dict]) -> str:
    """The table as text: coverage, clips, min confidence, accuracy, UAR."""
    lines = ["coverage  clips  min confidence  accuracy     UAR"]
    for row in table:
        lines.append(
            f"{row['coverage']:8.0%}  {row['n_clips']:5d}  {row['min_confidence']:14.3f}  "
            f"{row['accuracy']:8.4f}  {row['uar']:.4f}"
        )
    return "\n".join(lines)


def risk_coverage_figure(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]):
    """Accuracy and UAR of the most confident clips against the share answered (every coverage
    from one clip to all), with the confidence threshold that keeps each share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    counts = np.unique(np.linspace(1, n, min(n, 100)).round().astype(int))
    rows = [answered(probabilities, labels, c, class_names) for c in counts]
    coverage = [r["coverage"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(coverage, [r["accuracy"] for r in rows], label="accuracy")
    ax.plot(coverage, [r["uar"] for r in rows], label="UAR")
    ax.plot(coverage, [r["min_confidence"] for r in rows], "k:", label="min confidence kept")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share of clips answered, most confident first)")
    ax.set_ylabel("on the clips answered")
    ax.set_title("risk-coverage (test)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
