"""``ser cv --protocol matrix``: the cross-corpus train -> test matrix over pooled corpora.

Each row trains on one corpus (and, with three corpora or more, on the pool of all but one) and
tests on the trained corpora's own speaker-independent test splits and on every clip of each other
corpus, in one label space, once per seed::

    ser cv --protocol matrix --config configs/cnn2d.yaml --data configs/data/cross_corpus.yaml \\
        --data.roots '{ravdess: RAVDESS, emodb: EMODB}' \\
        --seeds 0 1 2 --jobs 2 --out lightning_logs/matrix

It prints the mean +- std of UAR and accuracy per cell beside chance, and writes
``OUT/matrix.csv``, ``OUT/matrix.png`` (a heat-map of UAR) and ``OUT/results.json`` (one entry per
run, saved as each finishes: a rerun resumes at the first missing run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ser.io import write_text
from ser.runs import fit_and_test

#: The label space of EmoBox's cross-corpus track, used unless ``--data.emotions`` is given.
DEFAULT_EMOTIONS = ["neutral", "happy", "sad", "angry"]


def train_sets(corpora: list[str]) -> list[list[str]]:
    """The rows: each corpus alone, then (three corpora or more) each pool of all but one."""
    rows = [[name] for name in corpora]
    if len(corpora) >= 3:
        rows += [[n for n in corpora if n != left] for left in corpora]
    return rows


def row_name(train: list[str]) -> str:
    return "+".join(train)


def run_key(train: list[str], seed: int) -> str:
    return f"{row_name(train)}@{seed}"


def run_cell(fit_args: list[str], train: list[str], seed: int, out: str) -> dict:
    """Train on ``train`` with ``seed`` in-process; each corpus's test figures."""
    start = time.perf_counter()
    cli, metrics = fit_and_test(
        [*fit_args, "--data.train_corpora", json.dumps(train), "--seed_everything", str(seed)],
        out, f"{row_name(train)}_seed{seed}",
    )  # fmt: skip
    return {
        "train": train,
        "seed": seed,
        "cells": metrics["per_corpus"],
        "n_classes": len(metrics["class_names"]),
        "seconds": time.perf_counter() - start,
        "log_dir": str(cli.trainer.log_dir),
    }


def summarise(results: list[dict], corpora: list[str]) -> list[dict]:
    """One row per (train set, test corpus): mean +- std over seeds of UAR and accuracy, chance."""
    rows = []
    for train in dict.fromkeys(row_name(r["train"]) for r in results):
        runs = [r for r in results if row_name(r["train"]) == train]
        for test in corpora:
            cells = [r["cells"][test] for r in runs if test in r["cells"]]
            if not cells:
                continue
            uar = np.array([c["uar"] for c in cells])
            accuracy = np.array([c["accuracy"] for c in cells])
            rows.append({
                "train": train, "test": test, "in_corpus": test in runs[0]["train"],
                "seeds": len(cells), "uar_mean": uar.mean(), "uar_std": spread(uar),
                "accuracy_mean": accuracy.mean(), "accuracy_std": spread(accuracy),
                "chance_uar": 1.0 / runs[0]["n_classes"],
                "chance_accuracy": cells[0]["chance_accuracy"], "n_clips": cells[0]["n_clips"],
            })  # fmt: skip
    return rows


def spread(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def format_matrix(rows: list[dict], corpora: list[str]) -> str:
    """Train sets down, test corpora across: ``UAR mean +- std / accuracy mean``; in-corpus cells
    (the speaker-independent test split) marked ``*``; chance on the last line."""
    trains = list(dict.fromkeys(r["train"] for r in rows))
    cell = {(r["train"], r["test"]): r for r in rows}
    width = max(12, *(len(t) for t in trains))
    corner = "train \\ test"
    lines = [f"{corner:<{width}}" + "".join(f"  {c:>24}" for c in corpora)]
    for train in trains:
        parts = []
        for test in corpora:
            r = cell.get((train, test))
            text = "" if r is None else (
                f"{r['uar_mean']:.3f}+-{r['uar_std']:.3f} / {r['accuracy_mean']:.3f}"
                + ("*" if r["in_corpus"] else " ")
            )  # fmt: skip
            parts.append(f"  {text:>24}")
        lines.append(f"{train:<{width}}" + "".join(parts))
    chance = {r["test"]: r for r in rows}
    lines.append(f"{'chance':<{width}}" + "".join(
        f"  {chance[c]['chance_uar']:.3f}        / {chance[c]['chance_accuracy']:.3f} "
        if c in chance else f"  {'':>24}" for c in corpora
    ))  # fmt: skip
    seeds = sorted({r["seeds"] for r in rows})
    lines.append(f"UAR mean +- std / accuracy mean over {'/'.join(map(str, seeds))} seeds; "
                 "* in-corpus (its speaker-independent test split), else every clip of the corpus")  # fmt: skip
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    columns = ["train", "test", "in_corpus", "seeds", "uar_mean", "uar_std", "accuracy_mean",
               "accuracy_std", "chance_uar", "chance_accuracy", "n_clips"]  # fmt: skip
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])
                              for c in columns))  # fmt: skip
    write_text(path, "\n".join(lines) + "\n")


def write_heatmap(rows: list[dict], corpora: list[str], path: Path) -> None:
    """UAR means as a heat-map (train sets down, test corpora across), each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trains = list(dict.fromkeys(r["train"] for r in rows))
    values = np.full((len(trains), len(corpora)), np.nan)
    cell = {(r["train"], r["test"]): r for r in rows}
    figure, axes = plt.subplots(figsize=(1.8 + 1.7 * len(corpora), 1.2 + 0.7 * len(trains)))
    for i, train in enumerate(trains):
        for j, test in enumerate(corpora):
            r = cell.get((train, test))
            if r is None:
                continue
            values[i, j] = r["uar_mean"]
            axes.text(j, i, f"{r['uar_mean']:.3f}\n+-{r['uar_std']:.3f}", ha="center",
                      va="center", fontsize=9)  # fmt: skip
    image = axes.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(corpora)), corpora)
    axes.set_yticks(range(len(trains)), trains)
    axes.set_xlabel("tested on")
    axes.set_ylabel("trained on")
    axes.set_title("UAR (mean +- std over seeds)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


#: The files of the summary ``run_matrix`` writes into ``OUT``.
MATRIX_FILES = ("matrix.csv", "matrix.png")


def run_matrix(fit_args: list[str], corpora: list[str], seeds: list[int], jobs: int,
               out: Path, pool_runner, done: list[dict], settings: dict) -> list[dict]:  # fmt: skip
    """Every (train set, seed) run not in ``done`` (the finished runs of ``OUT/results.json``,
    :func:`ser.cv.resumed`); then the summary, printed and written. ``pool_runner(function,
    jobs_args, jobs, record)`` runs the jobs (``ser cv``'s); ``settings`` go with each run."""
    if not any(a == "--data.emotions" or a.startswith("--data.emotions=") for a in fit_args):
        fit_args = [*fit_args, "--data.emotions", json.dumps(DEFAULT_EMOTIONS)]
    results_path = out / "results.json"
    results = {run_key(r["train"], r["seed"]): r for r in done}
    todo = [(fit_args, train, seed, str(out)) for train in train_sets(corpora) for seed in seeds
            if run_key(train, seed) not in results]  # fmt: skip

    def record(result: dict) -> None:
        results[run_key(result["train"], result["seed"])] = {**result, "settings": settings}
        write_text(results_path, json.dumps(list(results.values()), indent=2) + "\n")
        cells = ", ".join(f"{name} {c['uar']:.3f}" for name, c in result["cells"].items())
        print(f"trained on {row_name(result['train'])}, seed {result['seed']}: UAR {cells} "
              f"({result['seconds'] / 60:.1f} min)", flush=True)  # fmt: skip

    pool_runner(run_cell, todo, jobs, record)
    rows = summarise(list(results.values()), corpora)
    print("\n" + format_matrix(rows, corpora))
    write_csv(rows, out / MATRIX_FILES[0])
    write_heatmap(rows, corpora, out / MATRIX_FILES[1])
    for kind, name in (("matrix", "matrix.csv"), ("heat-map", "matrix.png"),
                       ("runs", "results.json")):  # fmt: skip
        print(f"wrote {kind}: {out / name}")
    return rows
