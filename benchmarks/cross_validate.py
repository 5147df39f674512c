"""Speaker-independent k-fold cross-validation: one ``ser fit`` per speaker fold, then a table.

Each fold holds out one group of speakers for test and the next group for validation
(``--data.split.fold k`` with ``--data.split.test_speakers``/``val_speakers`` null, given together
as ``--data.split '{"fold": k, "n_folds": N, "test_speakers": null, "val_speakers": null}'``), so
over all folds every speaker is tested exactly once. A fold's test metrics are saved as soon as it
finishes, so an interrupted run resumes at the first missing fold.

    python benchmarks/cross_validate.py --root PATH/TO/RAVDESS \
        --config configs/cnn2d.yaml --data configs/data/ravdess.yaml --n_folds 6

``--jobs 2`` trains two folds at once, each on half the cores: small nets gain less from a second
torch thread than from a second run (docs/results.md gives the measured ratio).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ser

import argparse
import contextlib
import fcntl
import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from benchmarks.model_zoo import threads_per_job
from ser.io import write_text


@contextlib.contextmanager
def held(lock: str | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (the one ``flock(1)`` takes) while the block runs."""
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_fold(args: argparse.Namespace, fold: int) -> dict:
    """Train and test one fold in-process; return its test metrics and wall time."""
    from ser.cli import main

    start = time.perf_counter()
    # One --data.split value, merged into the data config's split: jsonargparse rejects null
    # given to a single field (--data.split.test_speakers null).
    split = {"fold": fold, "n_folds": args.n_folds, "test_speakers": None, "val_speakers": None}
    cli = main(
        [
            "fit", "--config", args.config, "--data", args.data, "--data.root", args.root,
            "--data.split", json.dumps(split),
            "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(args.out),
            "--trainer.logger.init_args.name", f"fold{fold}",
            *args.extra,
        ]
    )  # fmt: skip
    log_dir = Path(cli.trainer.log_dir)
    metrics = json.loads((log_dir / "test" / "metrics.json").read_text())
    test_speakers = sorted({c.speaker for c in cli.datamodule.datasets["test"].clips})
    return {
        "fold": fold,
        "uar": metrics["uar"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n_clips": metrics["n_clips"],
        "test_speakers": test_speakers,
        "epochs": cli.trainer.current_epoch,
        "seconds": time.perf_counter() - start,
        "log_dir": str(log_dir),
    }


def held_fold(args: argparse.Namespace, fold: int) -> dict:
    with held(args.lock):
        return run_fold(args, fold)


def set_threads(threads: int) -> None:
    """Each worker process's share of the cores."""
    import torch

    torch.set_num_threads(threads)


def table(results: list[dict]) -> str:
    lines = ["fold  test speakers         UAR   accuracy  macro F1  clips  epochs  minutes"]
    for r in results:
        lines.append(
            f"{r['fold']:>4}  {','.join(r['test_speakers']):<18}  {r['uar']:.3f}  "
            f"{r['accuracy']:>8.3f}  {r['macro_f1']:>8.3f}  {r['n_clips']:>5}  {r['epochs']:>6}  "
            f"{r['seconds'] / 60:>7.1f}"
        )
    for key in ("uar", "accuracy", "macro_f1"):
        values = np.array([r[key] for r in results])
        lines.append(
            f"{key}: mean {values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
            f" (std over {len(values)} folds)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="corpus folder (--data.root)")
    parser.add_argument("--config", default="configs/cnn2d.yaml")
    parser.add_argument("--data", default="configs/data/ravdess.yaml")
    parser.add_argument("--n_folds", type=int, default=6)
    parser.add_argument("--folds", type=int, nargs="*", help="run only these folds (default all)")
    parser.add_argument("--out", default="lightning_logs/cv", help="runs and results.json go here")
    parser.add_argument("--lock", help="flock this file around each fold (shared machines)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="folds at once, each with cores / jobs torch threads"
    )
    parser.add_argument("extra", nargs="*", help="more `ser fit` arguments, after --")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = (
        {r["fold"]: r for r in json.loads(results_path.read_text())}
        if results_path.is_file()
        else {}
    )
    folds = args.folds if args.folds is not None else range(args.n_folds)
    todo = [fold for fold in folds if fold not in results]

    def record(result: dict) -> None:
        results[result["fold"]] = result
        write_text(
            results_path, json.dumps(sorted(results.values(), key=lambda r: r["fold"]), indent=2)
        )
        print(table([result]), flush=True)

    if args.jobs == 1:
        for fold in todo:
            record(held_fold(args, fold))
            if args.lock:
                time.sleep(5)  # let jobs queued on the lock run between folds
    else:
        with ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=set_threads, initargs=(threads_per_job(args.jobs),),
        ) as pool:  # fmt: skip
            for done in as_completed([pool.submit(held_fold, args, fold) for fold in todo]):
                record(done.result())
    print(table(sorted(results.values(), key=lambda r: r["fold"])))


if __name__ == "__main__":
    main()
