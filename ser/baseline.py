"""``ser baseline``: an SVM on per-clip statistics of hand-crafted features (seed S4).

The clips, classes and splits come from the same DataModules as ``ser fit`` (``--data``); each
feature type is pooled per clip (mean and std over the valid frames of the front-end's output),
standardised, and classified by scikit-learn's ``SVC``. Each feature type gets the report of
``ser test`` (per-class table, confusion matrix CSV/PNG, metrics JSON) in ``OUT_DIR/<features>``;
the best type by validation UAR is named, and ``OUT_DIR/summary.json`` lists them all::

    python -m ser baseline --data configs/data/ravdess.yaml --data.root PATH \\
        --features '[mfcc, spectral, handcrafted]' --C 10 --kernel rbf
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from torch.utils.data import DataLoader

from ser.data.base import ClipDataset, SERDataModule, collate
from ser.errors import SERError
from ser.io import write_text
from ser.models.pooling import mean_std_pool
from ser.report import format_table, metrics_from_confusion, write_report
from ser.transforms import build_frontend

log = logging.getLogger("ser")

#: Front-ends whose frames make sense to pool per clip.
POOLABLE = ("logmel", "mfcc", "zcr_rms", "spectral", "handcrafted")


@torch.no_grad()
def pooled_features(
    datamodule: SERDataModule, stage: str, features: str, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip mean and std of ``features`` over the valid frames of the ``stage`` split.

    Clips are centre-cropped (no random crop, even for ``train``), and the front-end is not
    per-clip standardised (that would make every mean 0 and every std 1).

    Returns:
        ``(n_clips, 2 * n_features)`` statistics and ``(n_clips,)`` labels.
    """
    if features not in POOLABLE:
        raise SERError(f"--features {features!r} cannot be pooled; choose from {list(POOLABLE)}")
    settings = {**datamodule.frontend_config, "features": features, "normalize": False}
    frontend = build_frontend(**settings)
    data = datamodule.datasets[stage]
    fixed = ClipDataset(data.waves, data.labels, data.clips, data.max_samples, train=False)
    rows, labels = [], []
    for batch in DataLoader(fixed, batch_size=batch_size, collate_fn=collate):
        x, lengths = frontend(batch["waveform"], batch["lengths"])  # (B, C, F), (B,)
        rows.append(mean_std_pool(x, lengths))  # (B, 2C)
        labels.append(batch["label"])
    return torch.cat(rows).numpy(), torch.cat(labels).numpy()


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts, rows = true class."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (true, predicted), 1)
    return out


@dataclass
class BaselineResult:
    """One feature type's scores and where its report went."""

    features: str
    n_dims: int
    val_uar: float
    test: dict
    out_dir: Path
    seconds: float


def run_baseline(
    datamodule: SERDataModule,
    features: list[str],
    out_dir: Path,
    C: float = 10.0,
    kernel: str = "rbf",
    gamma: str | float = "scale",
) -> list[BaselineResult]:
    """Fit and evaluate one SVM per feature type; write each type's test report."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    datamodule.prepare_data()
    datamodule.setup("fit")
    n, names = datamodule.n_classes, datamodule.class_names
    results = []
    for name in features:
        start = time.perf_counter()
        x_train, y_train = pooled_features(datamodule, "train", name)
        model = make_pipeline(StandardScaler(), SVC(C=C, kernel=kernel, gamma=gamma))
        model.fit(x_train, y_train)
        scores = {}
        for stage in ("val", "test"):
            x, y = pooled_features(datamodule, stage, name)
            scores[stage] = confusion(y, model.predict(x), n)
        val_uar = metrics_from_confusion(scores["val"], names)["uar"]
        extra = {
            "features": name, "svm": {"C": C, "kernel": kernel, "gamma": gamma},
            "val_uar": val_uar, "data": type(datamodule).__name__, "n_train": len(y_train),
        }  # fmt: skip
        report = write_report(scores["test"], names, out_dir / name, extra=extra)
        seconds = time.perf_counter() - start
        results.append(
            BaselineResult(name, x_train.shape[1], val_uar, report.metrics, out_dir / name, seconds)
        )
        print(f"\n== SVM on {name} ({x_train.shape[1]} dims), test split ==", flush=True)
        print(format_table(report.metrics), flush=True)
    return results


def summary_table(results: list[BaselineResult]) -> str:
    """One row per feature type, and the best type by validation UAR."""
    lines = ["features      dims  val UAR  test UAR  test acc  test F1  seconds"]
    for r in results:
        lines.append(
            f"{r.features:<12} {r.n_dims:5d}  {r.val_uar:7.4f}  {r.test['uar']:8.4f}  "
            f"{r.test['accuracy']:8.4f}  {r.test['macro_f1']:7.4f}  {r.seconds:7.1f}"
        )
    best = max(results, key=lambda r: r.val_uar)
    lines.append(f"best by validation UAR: {best.features} (test UAR {best.test['uar']:.4f})")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="ser baseline",
        description="SVM on per-clip statistics of hand-crafted features, with the report of "
        "`ser test` for each feature type (seed S4).",
        default_config_files=[],
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML of these arguments")
    parser.add_subclass_arguments(
        SERDataModule,
        "data",
        help="corpus and split, as in `ser fit` (e.g. configs/data/ravdess.yaml)",
    )
    parser.add_argument(
        "--features", type=list[Literal[POOLABLE]], default=["handcrafted"],
        help="feature types to pool per clip, one SVM (and report) each",
    )  # fmt: skip
    parser.add_argument("--C", type=float, default=10.0, help="SVM regularisation (S4: 10)")
    parser.add_argument(
        "--kernel", type=Literal["rbf", "linear", "poly", "sigmoid"], default="rbf",
        help="SVM kernel (S4: rbf)",
    )  # fmt: skip
    parser.add_argument(
        "--gamma", type=float | Literal["scale", "auto"], default="scale", help="RBF kernel width"
    )
    parser.add_argument(
        "--out_dir", type=str, default="lightning_logs/baseline", help="where the reports go"
    )
    return parser


def main(argv: list[str] | None = None) -> list[BaselineResult]:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    if not logging.getLogger("ser").handlers and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[ser] %(levelname)s %(message)s")
    # A SERError goes up to ser.__main__, which reports it in one line (exit status 2).
    if cfg.C <= 0:
        raise SERError(f"--C must be positive, got {cfg.C}")
    if not cfg.features:
        raise SERError("--features is empty; give at least one of " + ", ".join(POOLABLE))
    datamodule = parser.instantiate_classes(cfg).data
    out_dir = Path(cfg.out_dir)
    results = run_baseline(datamodule, cfg.features, out_dir, cfg.C, cfg.kernel, cfg.gamma)
    table = summary_table(results)
    print("\n" + table, flush=True)
    payload = {
        "results": [
            {"features": r.features, "dims": r.n_dims, "val_uar": r.val_uar, "seconds": r.seconds,
             "test": {k: r.test[k] for k in ("uar", "accuracy", "macro_f1", "n_clips")},
             "report": str(r.out_dir)}
            for r in results
        ],
        "best": max(results, key=lambda r: r.val_uar).features,
        "svm": {"C": cfg.C, "kernel": cfg.kernel, "gamma": cfg.gamma},
    }  # fmt: skip
    path = write_text(out_dir / "summary.json", json.dumps(payload, indent=2) + "\n")
    print(f"wrote summary: {path}", flush=True)
    return results


if __name__ == "__main__":
    main()
