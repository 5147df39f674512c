"""``ser predict --plot FILE.png``: each recording's class probabilities over time, one panel per
recording, its speech segments (``--segments vad``) shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser.errors import SERError
from ser.io import atomic_path, ensure_writable

#: File endings matplotlib writes that ``--plot`` accepts.
PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_plot_path(path: Path) -> None:
    """Refuse, before any work, a ``--plot`` file that cannot be written."""
    if path.suffix.lower() not in PLOT_FORMATS:
        raise SERError(f"--plot {path}: use a file name ending in {', '.join(PLOT_FORMATS)}")
    ensure_writable(path.parent, f"--plot {path}")


def plot_predictions(predictions: list, class_names: list[str], path: Path) -> Path:
    """Draw each :class:`ser.inference.predict.Prediction`: one line per class through its windows'
    probabilities (at the window centres; a single window is a point), segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(predictions), 1, figsize=(10, 2.4 * len(predictions) + 0.6), squeeze=False
    )
    for ax, prediction in zip(axes[:, 0], predictions, strict=True):
        centres, rows = [], []
        probabilities = prediction.window_probabilities.numpy()  # (n_windows, n_classes)
        for i, (start, end) in enumerate(zip(prediction.starts, prediction.ends, strict=True)):
            if i and start > prediction.ends[i - 1]:  # a gap (silence): break the lines
                centres.append(float("nan"))
                rows.append(np.full(len(class_names), np.nan))
            centres.append((start + end) / 2)
            rows.append(probabilities[i])
        probabilities = np.stack(rows)  # (n_points, n_classes)
        for i, (start, end) in enumerate(prediction.segments):
            ax.axvspan(start, end, color="0.88", lw=0, label="speech" if i == 0 else None)
        for c, name in enumerate(class_names):
            ax.plot(centres, probabilities[:, c], marker=".", lw=1.2, label=name)
        ax.set(xlim=(0, max(prediction.duration, 1e-3)), ylim=(0, 1), ylabel="probability")
        ax.set_title(str(prediction.path), fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower()[1:], dpi=110)
    plt.close(fig)
    return path
