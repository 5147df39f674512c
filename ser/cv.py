"""``ser cv``: speaker-independent cross-validation, the protocol papers report.

One ``ser fit`` per fold of a corpus's speaker folds (``--protocol speaker``, ``--n_folds N``),
per speaker (``--protocol loso``), or, on pooled corpora (:class:`ser.data.Pooled`), per corpus left
out (``--protocol corpus``: train on the others, test on all of it), each testing speakers no
other stage saw; then the mean +- std
of UAR, accuracy and macro F1 over the folds and the pooled confusion matrix (every clip tested
exactly once), with the report of ``ser test`` in ``OUT/pooled``::

    ser cv --config configs/cnn2d.yaml --data configs/data/savee.yaml --data.root PATH \\
        --protocol loso --jobs 2 --out lightning_logs/cv_savee

Options ``ser cv`` does not know go to every ``ser fit`` as they are. A fold's result is saved as
soon as it finishes (``OUT/results.json``, with the options it was run with), so a rerun with the
same options resumes at the first missing fold (and rewrites ``OUT/pooled`` from all the folds);
a rerun with other options is refused, and ``--overwrite`` starts afresh. Without
``OUT/results.json``, an ``OUT`` that holds a report already is refused as every command refuses
to replace a file (:func:`ser.io.refuse_to_replace`).
``--jobs N`` trains N folds at once, each with cores / N torch threads.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ser.errors import SERError
from ser.io import refuse_to_replace, write_text
from ser.report import format_table, report_files, write_report
from ser.runs import fit_and_test

#: Where ``ser cv`` (and ``--protocol matrix``) keeps each finished run, which a rerun resumes.
RESULTS_FILE = "results.json"


def resumed(out: Path, settings: dict, files: list[Path], overwrite: bool) -> list[dict]:
    """The finished runs in ``OUT/results.json`` that a rerun with the same ``settings`` resumes.

    Without a results file, the ``files`` the command writes are refused if there
    (:func:`ser.io.refuse_to_replace`); with ``overwrite`` the command starts afresh (the results
    file is replaced when its first run finishes).

    Args:
        out: the ``--out`` folder.
        settings: the options the runs depend on, stored with each run.
        files: the files the command writes besides the results file.
        overwrite: the user's ``--overwrite``.

    Raises:
        SERError: the results file is not ``ser cv``'s or holds runs of other options, or (no
            results file) a file to write exists, without ``overwrite``.
    """
    path = out / RESULTS_FILE
    what = f"--out {out}"
    if overwrite:
        return []
    if not path.is_file():
        refuse_to_replace([path, *files], overwrite, what)
        return []
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        runs = err
    if not (isinstance(runs, list) and all(isinstance(r, dict) for r in runs)):
        raise SERError(
            f"{what}: {path} is not the results file ser cv writes; choose another --out, or add "
            "--overwrite to start afresh"
        )
    other = [r.get("settings") for r in runs if r.get("settings") != settings]
    if other:
        raise SERError(
            f"{what}: {path} holds runs of other options ({json.dumps(other[0])}, now "
            f"{json.dumps(settings)}); a rerun resumes only the same cross-validation: give the "
            "same options, another --out, or --overwrite to start afresh"
        )
    return runs


def threads_per_job(jobs: int) -> int:
    """Each of ``jobs`` runs at once gets an equal share of the cores as torch threads."""
    return max(1, (os.cpu_count() or 1) // jobs)


def fold_data(protocol: str, fold: int, n_folds: int, corpora: list[str]) -> list[str]:
    """The data options of one fold: the corpus left out (``corpus``), else the ``--data.split``,
    whose folds decide the speakers, so named ones are cleared (one value for the whole split:
    jsonargparse cannot set a single nested field to null)."""
    if protocol == "corpus":
        return ["--data.test_corpus", corpora[fold]]
    return ["--data.split", json.dumps({
        "protocol": protocol, "fold": fold, "n_folds": n_folds,
        "test_speakers": None, "val_speakers": None,
    })]  # fmt: skip


def count_folds(
    fit_args: list[str], protocol: str, n_folds: int
) -> tuple[int, list[str], list[str]]:
    """The number of folds (the speakers for ``loso``, the corpora for ``corpus``), the class
    names and the pooled corpora's names, from the data."""
    from ser.cli import build_cli
    from ser.data import Pooled

    first = [] if protocol in ("corpus", "matrix") else fold_data(protocol, 0, max(n_folds, 2), [])
    data = build_cli([*fit_args, *first], run=False).datamodule
    corpora = data.corpus_names or []
    if protocol in ("corpus", "matrix"):
        if not isinstance(data, Pooled):
            raise SERError(
                f"--protocol {protocol} needs pooled corpora: --data configs/data/pooled.yaml "
                "(or configs/data/cross_corpus.yaml)"
            )
        return len(corpora), list(data.class_names), corpora
    speakers = {c.speaker for c in data.clips()}
    if len(speakers) < 2:
        raise SERError(f"ser cv needs speakers; {type(data).__name__} has {len(speakers)}")
    return (len(speakers) if protocol == "loso" else n_folds), list(data.class_names), corpora


def run_fold(
    fit_args: list[str], protocol: str, n_folds: int, corpora: list[str], fold: int, out: str
) -> dict:
    """Train and test one fold in-process; its test metrics, confusion matrix and wall time."""
    start = time.perf_counter()
    cli, metrics = fit_and_test(
        [*fit_args, *fold_data(protocol, fold, n_folds, corpora)], out, f"fold{fold}"
    )
    log_dir = Path(cli.trainer.log_dir)
    return {
        "fold": fold,
        "test_speakers": sorted(
            {
                c.corpus if protocol == "corpus" else c.speaker
                for c in cli.datamodule.datasets["test"].clips
            }
        ),  # fmt: skip
        **{k: metrics[k] for k in ("uar", "accuracy", "macro_f1", "n_clips", "confusion_matrix")},
        # per-gender UAR and accuracy of the fold's test report (absent: no gender metadata)
        "gender": metrics.get("fairness", {}).get("gender"),
        "seconds": time.perf_counter() - start,
        "log_dir": str(log_dir),
    }


def run_jobs(function, jobs_args: list[tuple], jobs: int, record) -> None:
    """``record(function(*args))`` for each of ``jobs_args``, ``jobs`` at a time in spawned
    processes of cores / ``jobs`` torch threads each (in this process when ``jobs`` is 1)."""
    if jobs == 1:
        for job in jobs_args:
            record(function(*job))
        return
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"),
        initializer=_set_threads, initargs=(threads_per_job(jobs),),
    ) as pool:  # fmt: skip
        for future in as_completed([pool.submit(function, *job) for job in jobs_args]):
            record(future.result())


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def fold_table(results: list[dict]) -> str:
    """One row per fold, then mean +- std (over folds) of UAR, accuracy and macro F1."""
    genders = any(r.get("gender") for r in results)
    lines = ["fold  tested (speakers)      UAR  accuracy  macro F1  clips  minutes"
             + ("  UAR per gender" if genders else "")]  # fmt: skip
    for r in results:
        groups = (r.get("gender") or {}).get("groups", {})
        lines.append(
            f"{r['fold']:>4}  {','.join(r['test_speakers']):<18}  {r['uar']:.3f}  "
            f"{r['accuracy']:>8.3f}  {r['macro_f1']:>8.3f}  {r['n_clips']:>5}  "
            f"{r['seconds'] / 60:>7.1f}"
            + ("  " + ", ".join(f"{g} {m['uar']:.3f}" for g, m in groups.items()) if groups else "")
        )
    for key in ("uar", "accuracy", "macro_f1"):
        values = np.array([r[key] for r in results])
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        lines.append(f"{key}: {values.mean():.3f} +- {spread:.3f} (over {len(values)} folds)")
    summary = gender_summary(results)
    if summary:
        lines.append(format_gender(summary))
    return "\n".join(lines)


def gender_summary(results: list[dict]) -> dict:
    """Per gender, each fold's UAR and accuracy (from its test report's fairness figures) and
    their mean and std over the folds that tested that gender; the gap (best minus worst gender)
    over the folds that tested two genders or more. Empty without gender metadata."""
    per_gender: dict[str, dict[str, list[float]]] = {}
    gaps: dict[str, list[float]] = {"uar": [], "accuracy": []}
    for r in results:
        entry = r.get("gender") or {}  # a fold from before the figures existed has none
        for group, m in entry.get("groups", {}).items():
            values = per_gender.setdefault(group, {"uar": [], "accuracy": [], "n_clips": []})
            for key in values:
                values[key].append(m[key])
        for key in gaps:
            if f"{key}_gap" in entry:
                gaps[key].append(entry[f"{key}_gap"])
    if not per_gender:
        return {}

    def stats(values: list[float]) -> dict:
        array = np.array(values, dtype=np.float64)
        spread = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return {"mean": float(array.mean()), "std": spread, "n_folds": len(array)}

    summary: dict = {
        group: {"uar": stats(v["uar"]), "accuracy": stats(v["accuracy"]),
                "n_clips": int(sum(v["n_clips"]))}
        for group, v in sorted(per_gender.items())
    }  # fmt: skip
    if gaps["uar"]:
        summary["gap"] = {key: stats(values) for key, values in gaps.items()}
    return summary


def format_gender(summary: dict) -> str:
    """One line per gender (mean +- std of UAR and accuracy over folds), then the gap."""
    lines = []
    for group, s in summary.items():
        what = "gender gap" if group == "gap" else f"gender {group}"
        clips = "" if group == "gap" else f", {s['n_clips']} clips"
        lines.append(
            f"{what}: UAR {s['uar']['mean']:.3f} +- {s['uar']['std']:.3f}, accuracy "
            f"{s['accuracy']['mean']:.3f} +- {s['accuracy']['std']:.3f} "
            f"(over {s['uar']['n_folds']} folds{clips})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="ser cv",
        description="Speaker-independent cross-validation: one `ser fit` per speaker fold (or "
        "speaker, or pooled corpus left out), then mean +- std over folds and the pooled "
        "confusion matrix. Options it does "
        "not know (--config, --data, --data.root, --trainer.*...) go to every `ser fit`.",
    )
    parser.add_argument("--protocol", choices=("speaker", "loso", "corpus", "matrix"),
                        default="speaker",
                        help="speaker folds, leave one speaker out, leave one corpus out (pooled "
                        "corpora), or the cross-corpus train -> test matrix of pooled corpora "
                        "(each corpus alone and, with 3 or more, all but one; default classes "
                        "neutral, happy, sad, angry)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="--protocol matrix: one run per train set and seed")  # fmt: skip
    parser.add_argument("--n_folds", type=int, default=6, help="speaker folds (--protocol speaker)")
    parser.add_argument("--folds", type=int, nargs="*", help="run only these folds (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once")
    parser.add_argument("--out", default="lightning_logs/cv", help="runs, results and the report")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in --out: forget the finished folds of OUT/results.json "
                        "(a rerun without it resumes them) and replace the report")  # fmt: skip
    args, fit_args = parser.parse_known_args(argv)
    if args.jobs < 1 or args.n_folds < 2:
        raise SERError(f"--jobs ({args.jobs}) must be >= 1 and --n_folds ({args.n_folds}) >= 2")
    if not any(a == "--config" or a.startswith("--config=") for a in fit_args):
        raise SERError("ser cv needs a run config: --config configs/cnn2d.yaml (and --data ...)")
    out = Path(args.out).expanduser()
    settings = {"protocol": args.protocol, "fit_args": fit_args}
    if args.protocol == "speaker":
        settings["n_folds"] = args.n_folds
    if args.protocol == "matrix":
        from ser.matrix import MATRIX_FILES, run_matrix

        done = resumed(out, settings, [out / f for f in MATRIX_FILES], args.overwrite)
        _, _, corpora = count_folds(fit_args, args.protocol, args.n_folds)
        matrix = run_matrix(fit_args, corpora, args.seeds, args.jobs, out, run_jobs, done, settings)
        return {"matrix": matrix}
    done = resumed(out, settings, report_files(out / "pooled"), args.overwrite)
    n_folds, class_names, corpora = count_folds(fit_args, args.protocol, args.n_folds)
    results_path = out / RESULTS_FILE
    results = {r["fold"]: r for r in done}
    folds = args.folds if args.folds is not None else range(n_folds)
    todo = [f for f in folds if f not in results]

    def record(result: dict) -> None:
        results[result["fold"]] = {**result, "settings": settings}
        done = sorted(results.values(), key=lambda r: r["fold"])
        write_text(results_path, json.dumps(done, indent=2) + "\n")
        print(fold_table([result]), flush=True)

    work = (fit_args, args.protocol, n_folds, corpora)
    run_jobs(run_fold, [(*work, fold, str(out)) for fold in todo], args.jobs, record)
    done = sorted(results.values(), key=lambda r: r["fold"])
    pooled = np.sum([r["confusion_matrix"] for r in done], axis=0)
    extra = {"protocol": args.protocol, "folds": [r["fold"] for r in done],
             "fold_uar": [r["uar"] for r in done], "gender": gender_summary(done) or None}  # fmt: skip
    report = write_report(pooled, class_names, out / "pooled", extra=extra)
    print("\n" + fold_table(done))
    print(f"\npooled over the folds' test clips:\n{format_table(report.metrics)}")
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return {"folds": done, "pooled": report.metrics}


if __name__ == "__main__":
    main()
