"""``ser baseline``: an SVM on per-clip statistics of hand-crafted features (seed S4).

The clips, classes, splits and feature pipeline come from the same DataModules as ``ser fit``
(``--data``); each front-end's output (the data's, or each of ``--frontends`` in the data's
pipeline) is pooled per clip (mean and std over the valid frames), standardised, and classified
by scikit-learn's ``SVC``. Each front-end gets the report of ``ser test`` (per-class table,
confusion matrix CSV/PNG, metrics JSON) in ``OUT_DIR/<name>``; the best by validation UAR is
named, and ``OUT_DIR/summary.json`` lists them all::

    python -m ser baseline --config configs/recipes/s4_folder_svm.yaml \\
        --data configs/data/ravdess.yaml --data.root PATH

Pooled statistics want the raw features: give front-ends ``normalize: false``.

Each report also ranks the front-end's feature groups by permutation importance on the test
split (:func:`group_importance`): the hand-crafted features by name (MFCC, pitch, RMS energy,
spectral centroid...), an encoder's statistics by layer, other front-ends' by blocks of
contiguous bins; ``permutation_importance.csv`` and ``permutation_importance`` in
``metrics.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from torch.utils.data import DataLoader

from ser.confusion import metrics_from_confusion
from ser.data.base import SERDataModule
from ser.data.dataset import ClipDataset, collate
from ser.errors import SERError
from ser.io import atomic_path, refuse_to_replace, write_text
from ser.models.pooling import mean_std_pool
from ser.report import format_table, report_files, write_report
from ser.transforms.handcrafted import DEFAULT_FEATURES
from ser.transforms.pipeline import FeaturePipeline, FrontendFactory

log = logging.getLogger("ser")

#: The file listing every front-end's scores, beside their reports.
SUMMARY_FILE = "summary.json"


@torch.no_grad()
def pooled_features(
    datamodule: SERDataModule, stage: str, pipeline: FeaturePipeline, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip mean and std of ``pipeline``'s features over the valid frames of ``stage``'s clips
    (centre crops, also for ``train``); of each layer of a pretrained encoder's features.

    Returns:
        ``(n_clips, 2 * n_features)`` statistics and ``(n_clips,)`` labels.
    """
    data = datamodule.datasets[stage]
    fixed = ClipDataset(data.waves, data.labels, data.clips, data.max_samples, train=False)
    rows, labels = [], []
    for batch in DataLoader(fixed, batch_size=batch_size, collate_fn=collate):
        x, lengths = pipeline(batch["waveform"], batch["lengths"])  # (B, [L,] C, F), (B,)
        rows.append(mean_std_pool(x, lengths).flatten(1))  # (B, [L *] 2C): each encoder layer
        labels.append(batch["label"])
    return torch.cat(rows).numpy(), torch.cat(labels).numpy()


def frontend_names(specs: list[dict]) -> list[str]:
    """A unique name per front-end spec: its class in lower case, with the feature set of a
    :class:`~ser.transforms.Handcrafted` that is not the default (``-2``... on repeats)."""
    names, seen = [], Counter()
    for spec in specs:
        base = spec["class_path"].rpartition(".")[2].lower()
        chosen = spec["init_args"].get("features")  # Handcrafted: name its feature set
        if chosen is not None and list(chosen) != DEFAULT_FEATURES:
            base = "-".join([base, *chosen])
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


#: Most groups a front-end without named features is cut into (blocks of contiguous bins).
MAX_BIN_GROUPS = 8


def feature_groups(frontend, n_dims: int) -> list[tuple[str, np.ndarray]]:
    """The groups of the pooled statistics' ``n_dims`` columns (:func:`pooled_features`: the mean
    of each channel, then the std of each; per layer for an encoder) whose importance is measured,
    each with both statistics of its channels: an encoder's layers (``layer K``); a
    :class:`~ser.transforms.Handcrafted` front-end's features (``mfcc``, ``pitch``, ``rms``...);
    else at most :data:`MAX_BIN_GROUPS` blocks of contiguous bins (``bins A-B``)."""
    n_layers = getattr(frontend, "n_layers", None)
    if n_layers and n_layers > 1:
        width = n_dims // n_layers
        return [(f"layer {k}", np.arange(k * width, (k + 1) * width)) for k in range(n_layers)]
    n_channels = n_dims // 2  # (mean, std) of each channel

    def columns(channels: np.ndarray) -> np.ndarray:
        return np.concatenate([channels, channels + n_channels])

    names, sizes = getattr(frontend, "features", None), getattr(frontend, "sizes", None)
    if names is not None and sizes is not None and sum(sizes) == n_channels:
        ends = np.cumsum(sizes)
        return [(name, columns(np.arange(end - size, end)))
                for name, size, end in zip(names, sizes, ends, strict=True)]  # fmt: skip
    blocks = np.array_split(np.arange(n_channels), min(MAX_BIN_GROUPS, n_channels))
    return [(f"bins {b[0]}-{b[-1]}", columns(b)) for b in blocks]


def group_importance(
    model,
    x: np.ndarray,
    y: np.ndarray,
    groups: list[tuple[str, np.ndarray]],
    class_names: list[str],
    repeats: int = 10,
    seed: int = 0,
) -> dict:
    """Grouped permutation importance: for each group, its columns' rows are shuffled together
    (one permutation for the whole group, so its columns keep their joint values and only their
    link to the label is cut) ``repeats`` times; the group's importance is the mean drop of UAR
    (and accuracy) from the unshuffled score, with its std over the repeats.

    Args:
        model: a fitted classifier (``predict``).
        x: ``(n_clips, n_dims)`` the clips' features; ``y``: ``(n_clips,)`` their labels.
        groups: ``(name, column indices)`` (:func:`feature_groups`).

    Returns:
        ``{"uar", "accuracy", "repeats", "groups": [...]}``: the unshuffled scores and one entry
        per group (``group``, ``n_dims``, ``uar_drop``, ``uar_drop_std``, ``accuracy_drop``),
        the most important first.
    """
    n = len(class_names)

    def scores(features: np.ndarray) -> np.ndarray:
        m = metrics_from_confusion(confusion(y, model.predict(features), n), class_names)
        return np.array([m["uar"], m["accuracy"]])

    base = scores(x)
    rng = np.random.default_rng(seed)
    rows = []
    for name, columns in groups:
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, columns] = x[rng.permutation(len(x))][:, columns]
            drops.append(base - scores(shuffled))
        drops = np.array(drops)  # (repeats, 2): UAR, accuracy
        rows.append({"group": name, "n_dims": len(columns), "uar_drop": float(drops[:, 0].mean()),
                     "uar_drop_std": float(drops[:, 0].std()),
                     "accuracy_drop": float(drops[:, 1].mean())})  # fmt: skip
    rows.sort(key=lambda r: -r["uar_drop"])
    return {"uar": float(base[0]), "accuracy": float(base[1]), "repeats": repeats, "groups": rows}


def format_importance(importance: dict) -> str:
    """The permutation-importance table, most important group first."""
    rows = importance["groups"]
    width = max(12, *(len(r["group"]) for r in rows))
    lines = [
        f"permutation importance on the test split (UAR {importance['uar']:.4f}; drop when a "
        f"group is shuffled, mean +- std over {importance['repeats']} shuffles):",
        f"{'feature group':<{width}}  dims  UAR drop       accuracy drop",
    ]
    for r in rows:
        lines.append(f"{r['group']:<{width}} {r['n_dims']:5d}  {r['uar_drop']:+.4f} +- "
                     f"{r['uar_drop_std']:.4f}  {r['accuracy_drop']:+.4f}")  # fmt: skip
    return "\n".join(lines)


def write_importance(importance: dict, path: Path) -> Path:
    """``permutation_importance.csv``: one row per group, most important first."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "n_dims", "uar_drop", "uar_drop_std", "accuracy_drop"])
        for r in importance["groups"]:
            writer.writerow([r["group"], r["n_dims"], f"{r['uar_drop']:.6f}",
                             f"{r['uar_drop_std']:.6f}", f"{r['accuracy_drop']:.6f}"])  # fmt: skip
    return path


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts, rows = true class."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (true, predicted), 1)
    return out


@dataclass
class BaselineResult:
    """One feature type's scores and where its report went."""

    name: str
    frontend: dict
    n_dims: int
    val_uar: float
    test: dict
    out_dir: Path
    seconds: float


def run_baseline(
    datamodule: SERDataModule,
    out_dir: Path,
    frontends: list[FrontendFactory] | None = None,
    C: float = 10.0,
    kernel: str = "rbf",
    gamma: str | float = "scale",
    permutation_repeats: int = 10,
    overwrite: bool = False,
) -> list[BaselineResult]:
    """Fit and evaluate one SVM per front-end (default: the data's); write each one's test report
    with the permutation importance of its feature groups (``permutation_repeats`` shuffles of
    each; 0: none) and ``OUT_DIR/summary.json``. A report file there already is replaced only with
    ``overwrite`` (:func:`ser.io.refuse_to_replace`), checked before any work."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    base = datamodule.pipeline.eval()
    pipelines = [base] if not frontends else [base.with_frontend(f) for f in frontends]
    names_of = frontend_names([p.spec["frontend"] for p in pipelines])
    files = [
        out_dir / SUMMARY_FILE,
        *(f for name in names_of for f in report_files(out_dir / name)),
    ]
    refuse_to_replace(files, overwrite, f"--out_dir {out_dir}")
    datamodule.prepare_data()
    datamodule.setup("fit")
    n, names = datamodule.n_classes, datamodule.class_names
    results = []
    for pipeline in pipelines:
        if getattr(pipeline.frontend, "normalize", False):
            log.warning("ser baseline: %s standardises each clip's features, so their per-clip "
                        "statistics say little; give it normalize: false",
                        type(pipeline.frontend).__name__)  # fmt: skip
    for name, pipeline in zip(names_of, pipelines, strict=True):
        start = time.perf_counter()
        x_train, y_train = pooled_features(datamodule, "train", pipeline)
        model = make_pipeline(StandardScaler(), SVC(C=C, kernel=kernel, gamma=gamma))
        model.fit(x_train, y_train)
        scores = {}
        for stage in ("val", "test"):
            x, y = pooled_features(datamodule, stage, pipeline)
            scores[stage] = confusion(y, model.predict(x), n)
        val_uar = metrics_from_confusion(scores["val"], names)["uar"]
        importance = None
        if permutation_repeats > 0:  # x, y: the test split's
            groups = feature_groups(pipeline.frontend, x_train.shape[1])
            importance = group_importance(model, x, y, groups, names, permutation_repeats)
        extra = {
            "name": name, "pipeline": pipeline.spec, "svm": {"C": C, "kernel": kernel, "gamma": gamma},
            "val_uar": val_uar, "data": type(datamodule).__name__, "n_train": len(y_train),
            "permutation_importance": importance,
        }  # fmt: skip
        report = write_report(scores["test"], names, out_dir / name, extra=extra)
        if importance is not None:
            path = write_importance(importance, out_dir / name / "permutation_importance.csv")
            report.files["permutation_importance"] = path
        seconds = time.perf_counter() - start
        results.append(
            BaselineResult(
                name,
                pipeline.spec["frontend"],
                x_train.shape[1],
                val_uar,
                report.metrics,
                out_dir / name,
                seconds,
            )  # fmt: skip
        )
        print(f"\n== SVM on {name} ({x_train.shape[1]} dims), test split ==", flush=True)
        print(format_table(report.metrics), flush=True)
        if importance is not None:
            print(format_importance(importance), flush=True)
    return results


def summary_table(results: list[BaselineResult]) -> str:
    """One row per feature type, and the best type by validation UAR."""
    width = max(12, *(len(r.name) for r in results))
    lines = [f"{'front-end':<{width}}  dims  val UAR  test UAR  test acc  test F1  seconds"]
    for r in results:
        lines.append(
            f"{r.name:<{width}} {r.n_dims:5d}  {r.val_uar:7.4f}  {r.test['uar']:8.4f}  "
            f"{r.test['accuracy']:8.4f}  {r.test['macro_f1']:7.4f}  {r.seconds:7.1f}"
        )
    best = max(results, key=lambda r: r.val_uar)
    lines.append(f"best by validation UAR: {best.name} (test UAR {best.test['uar']:.4f})")
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
        "--frontends", type=list[FrontendFactory] | None, default=None,
        help="front-ends to compare in the data's pipeline, one SVM (and report) each, e.g. "
        "ser.transforms.Handcrafted with normalize: false (default: the data's front-end)",
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
        "--permutation_repeats", type=int, default=10,
        help="shuffles of each feature group for its permutation importance on the test split "
        "(0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--out_dir", type=str, default="lightning_logs/baseline", help="where the reports go"
    )
    parser.add_argument(
        "--overwrite", type=bool, default=False,
        help="replace the reports and summary.json an earlier run wrote in --out_dir; without it "
        "an existing file is an error before any work",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> list[BaselineResult]:
    parser = build_parser()
    cfg = parser.parse_args(argv)
    # A SERError goes up to ser.__main__, which reports it in one line (exit status 2).
    if cfg.C <= 0:
        raise SERError(f"--C must be positive, got {cfg.C}")
    if isinstance(cfg.gamma, float) and not cfg.gamma > 0:
        raise SERError(f"--gamma must be positive (or scale, auto), got {cfg.gamma}")
    if cfg.permutation_repeats < 0:
        raise SERError(f"--permutation_repeats must be 0 or more, got {cfg.permutation_repeats}")
    init = parser.instantiate_classes(cfg)
    out_dir = Path(cfg.out_dir)
    results = run_baseline(init.data, out_dir, init.frontends, cfg.C, cfg.kernel, cfg.gamma,
                           cfg.permutation_repeats, cfg.overwrite)  # fmt: skip
    table = summary_table(results)
    print("\n" + table, flush=True)
    payload = {
        "results": [
            {"name": r.name, "frontend": r.frontend, "dims": r.n_dims, "val_uar": r.val_uar, "seconds": r.seconds,
             "test": {k: r.test[k] for k in ("uar", "accuracy", "macro_f1", "n_clips")},
             "report": str(r.out_dir)}
            for r in results
        ],
        "best": max(results, key=lambda r: r.val_uar).name,
        "svm": {"C": cfg.C, "kernel": cfg.kernel, "gamma": cfg.gamma},
    }  # fmt: skip
    path = write_text(out_dir / SUMMARY_FILE, json.dumps(payload, indent=2) + "\n")
    print(f"wrote summary: {path}", flush=True)
    return results


if __name__ == "__main__":
    main()
