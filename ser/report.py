"""The test report: per-class table, overall metrics, confusion matrix as CSV, PNG and JSON, and
with the clips' probabilities the expected calibration error and a reliability diagram."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from ser.confusion import metrics_from_confusion
from ser.io import atomic_path, write_text

#: Confidence bins of the expected calibration error (and of the reliability diagram).
ECE_BINS = 15


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE (L1, :data:`ECE_BINS` confidence bins) of ``(N, n_classes)`` probabilities, as the
    logged ``ece`` metric computes it."""
    return float(
        multiclass_calibration_error(probabilities, labels, probabilities.shape[1], n_bins=ECE_BINS)
    )


def figure(value: float | None, spec: str = ".4f") -> str:
    """A metric as text; ``-`` for one that is absent (computed on nothing)."""
    return "-" if value is None else format(value, spec)


def per_corpus_metrics(predictions: list[dict], class_names: list[str]) -> dict[str, dict]:
    """UAR, accuracy, macro F1 and clip count of each corpus of a pool, from the test predictions
    (rows with ``corpus``, ``label`` and ``probabilities``); empty for one corpus."""
    n = len(class_names)
    confusions: dict[str, np.ndarray] = {}
    for row in predictions:
        if row.get("corpus"):
            confusion = confusions.setdefault(row["corpus"], np.zeros((n, n), dtype=np.int64))
            confusion[row["label"], int(np.argmax(row["probabilities"]))] += 1
    result = {}
    for name, confusion in sorted(confusions.items()):
        metrics = metrics_from_confusion(confusion, class_names)
        support = [m["support"] for m in metrics.pop("per_class").values()]
        # what always answering the corpus's largest class scores (UAR's chance: 1 / classes)
        metrics["chance_accuracy"] = max(support) / max(1, sum(support))
        result[name] = metrics
    return result


def format_table(metrics: dict) -> str:
    """A plain-text per-class table followed by the overall figures."""
    names = list(metrics["per_class"])
    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  recall  precision      f1  support"]
    for name, m in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {figure(m['recall'], '.3f'):>6}  "
            f"{figure(m['precision'], '.3f'):>9}  {figure(m['f1'], '.3f'):>6}  {m['support']:7d}"
            + ("  absent from the test set" if not m["support"] else "")
        )
    lines.append(
        f"UAR {figure(metrics['uar'])}  accuracy {figure(metrics['accuracy'])}  "
        f"macro F1 {figure(metrics['macro_f1'])}  ({metrics['n_clips']} clips)"
    )
    return "\n".join(lines)


def confusion_figure(confusion: np.ndarray, class_names: list[str]):
    """A matplotlib figure: counts and row-normalised confusion matrices side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    n = len(class_names)
    named = [f"{c} (absent)" if not r else c for c, r in zip(class_names, rows[:, 0], strict=True)]
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.3 * n, 1.6 + 0.6 * n), squeeze=True)
    for ax, data, title, fmt in (
        (axes[0], confusion, "counts", "{:d}"),
        (axes[1], normalised, "row-normalised (recall)", "{:.2f}"),
    ):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_title(title)
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), named)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        top = data.max() if data.size else 0
        for i in range(n):
            for j in range(n):
                value = data[i, j]
                text = "-" if data is normalised and not rows[i, 0] else fmt.format(value.item())
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if top and value > 0.6 * top else "black")  # fmt: skip
    fig.tight_layout()
    return fig


def reliability(probabilities: np.ndarray, labels: np.ndarray, n_bins: int) -> dict:
    """Per confidence bin (equal width over [0, 1]): clip count, mean confidence and accuracy of
    the top class (the expected calibration error is their count-weighted mean gap)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)  # (N,)
    counts = np.bincount(index, minlength=n_bins)
    totals = np.maximum(counts, 1)
    mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / totals
    accuracy = np.bincount(index, weights=correct, minlength=n_bins) / totals
    return {"counts": counts, "confidence": mean_confidence, "accuracy": accuracy}


def reliability_figure(probabilities: np.ndarray, labels: np.ndarray, n_bins: int, ece: float):
    """A reliability diagram: accuracy against confidence per bin (bars), the diagonal a perfectly
    calibrated model follows, and the clips per bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = reliability(probabilities, labels, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    width = 1 / n_bins
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = bins["counts"] > 0
    top.bar(edges[:-1][filled], bins["accuracy"][filled], width=width, align="edge",
            color="tab:blue", edgecolor="black", label="accuracy")  # fmt: skip
    top.bar(edges[:-1][filled], (bins["confidence"] - bins["accuracy"])[filled], width=width,
            bottom=bins["accuracy"][filled], align="edge", color="tab:red", alpha=0.3,
            edgecolor="tab:red", label="gap to confidence")  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability (test): ECE {ece:.3f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(edges[:-1], bins["counts"], width=width, align="edge", color="grey")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("clips")
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, tag: str, add_figure: Callable | None) -> None:
    """Write ``fig`` as a PNG at ``path`` and hand it to ``add_figure`` (TensorBoard) if given."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    if add_figure is not None:
        add_figure(tag, fig)  # closes the figure
    else:
        import matplotlib.pyplot as plt

        plt.close(fig)


#: Every file :func:`write_report` may write into its folder, by kind.
REPORT_FILES = {
    "csv": "confusion_matrix.csv", "png": "confusion_matrix.png", "json": "metrics.json",
    "reliability": "reliability_diagram.png", "risk_coverage": "risk_coverage.png",
    "predictions": "predictions.csv",
}  # fmt: skip


def report_files(out_dir: str | Path) -> list[Path]:
    """The files :func:`write_report` may write into ``out_dir`` (for
    :func:`ser.io.refuse_to_replace`, before the work that leads to them)."""
    return [Path(out_dir) / name for name in REPORT_FILES.values()]


@dataclass
class Report:
    """What :func:`write_report` computed and wrote."""

    metrics: dict
    files: dict[str, Path]


def write_report(
    confusion: np.ndarray,
    class_names: list[str],
    out_dir: str | Path,
    extra: dict | None = None,
    add_figure: Callable | None = None,
    predictions: list[dict] | None = None,
    genders: dict[str, str] | None = None,
) -> Report:
    """Write ``confusion_matrix.csv``, ``confusion_matrix.png`` and ``metrics.json`` to ``out_dir``.

    Every file is written to a temporary name and renamed into place.

    Args:
        confusion: ``(n_classes, n_classes)`` counts, rows = true class.
        class_names: names in label order.
        out_dir: folder to write to (created).
        extra: more fields for ``metrics.json`` (checkpoint, corpus...).
        add_figure: also hand the figure to this, e.g. TensorBoard's ``SummaryWriter.add_figure``.
        predictions: one row per clip (``path``, ``speaker``, ``label`` index, ``probabilities``),
            written as ``predictions.csv``; they also give the expected calibration error
            (``ece`` in ``metrics.json``) and ``reliability_diagram.png``, and the accuracy and
            UAR of the most confident clips (``risk_coverage``, :mod:`ser.abstention`) and
            ``risk_coverage.png``, and UAR and accuracy per speaker and per gender (``fairness``,
            :mod:`ser.fairness`).
        genders: speaker id -> gender from the corpus's metadata (unknown speakers left out).
    """
    out_dir = Path(out_dir)
    confusion = np.asarray(confusion, dtype=np.int64)
    metrics = metrics_from_confusion(confusion, class_names)
    paths = {kind: out_dir / REPORT_FILES[kind] for kind in ("csv", "png", "json")}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *class_names, "support", "recall"])
        for name, row in zip(class_names, confusion, strict=True):
            recall = metrics["per_class"][name]["recall"]
            writer.writerow([name, *row.tolist(), int(row.sum()),
                             "absent" if recall is None else f"{recall:.4f}"])  # fmt: skip
    save_figure(confusion_figure(confusion, class_names), paths["png"], "test/confusion_matrix",
                add_figure)  # fmt: skip
    if predictions:
        probabilities = np.array([r["probabilities"] for r in predictions], dtype=np.float64)
        labels = np.array([r["label"] for r in predictions])
        # torchmetrics' ECE, the figure logged as test/ece (the diagram's bins give the same)
        metrics["ece"] = expected_calibration_error(
            torch.from_numpy(probabilities), torch.from_numpy(labels)
        )
        paths["reliability"] = out_dir / REPORT_FILES["reliability"]
        figure = reliability_figure(probabilities, labels, ECE_BINS, metrics["ece"])
        save_figure(figure, paths["reliability"], "test/reliability_diagram", add_figure)
        from ser.abstention import risk_coverage, risk_coverage_figure

        metrics["risk_coverage"] = risk_coverage(probabilities, labels, class_names)
        paths["risk_coverage"] = out_dir / REPORT_FILES["risk_coverage"]
        figure = risk_coverage_figure(probabilities, labels, class_names)
        save_figure(figure, paths["risk_coverage"], "test/risk_coverage", add_figure)
        from ser.fairness import fairness

        metrics["fairness"] = fairness(predictions, class_names, genders)
    payload = {
        **metrics,
        "class_names": class_names,
        "confusion_matrix": confusion.tolist(),
        **(extra or {}),
    }
    write_text(paths["json"], json.dumps(payload, indent=2, default=str) + "\n")
    if predictions is not None:
        paths["predictions"] = write_predictions(
            predictions, class_names, out_dir / REPORT_FILES["predictions"]
        )
    return Report(metrics=metrics, files=paths)


def write_predictions(rows: list[dict], class_names: list[str], path: Path) -> Path:
    """``predictions.csv``: path, speaker, true label, predicted label, one probability column per
    class (the file to open for error analysis)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker", "label", "predicted", *class_names])
        for row in rows:
            probabilities = row["probabilities"]
            predicted = max(range(len(probabilities)), key=probabilities.__getitem__)
            writer.writerow([
                row["path"], row["speaker"], class_names[row["label"]], class_names[predicted],
                *(f"{p:.6f}" for p in probabilities),
            ])  # fmt: skip
    return path
