"""Train and test every model of the zoo (and the SVM baseline) on one corpus; print one table.

Each model runs as its own ``python -m ser fit`` command (printed, so a row can be reproduced);
its test metrics come from the run's ``test/metrics.json``, the parameter count from the model
summary, the time per epoch from the ``EpochSummary`` lines. Results are merged into a JSON file,
so models can run one at a time (e.g. each under a lock) and the table printed at the end::

    python benchmarks/model_zoo.py --root /path/to/ravdess-16k --models m5 lstm
    python benchmarks/model_zoo.py --root /path/to/ravdess-16k --models baseline
    python benchmarks/model_zoo.py --table

``--models`` also takes any config under ``configs/`` by its name there (``recipes/s4_folder_m5``);
``--emotions`` trains and tests every model and the SVM on a subset of classes, e.g. seed S4's
comparison on RAVDESS's four classes (``--out`` keeps its results apart)::

    python benchmarks/model_zoo.py --root /path/to/ravdess-16k --out lightning_logs/s4_subset \
        --emotions angry calm happy sad --models recipes/s4_folder_m5 recipes/s4_folder_cnn2d baseline
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ser.cv import threads_per_job

REPO = Path(__file__).resolve().parents[1]
METRICS = ("uar", "accuracy", "macro_f1")
MODELS = ("cnn2d", "m5", "cnn_lstm", "cnn_lstm2d", "lstm", "vae", "ecapa", "resnet", "conformer")
PARAMS = re.compile(r"([\d.]+\s*[KMB]?)\s+Trainable params")
EPOCH = re.compile(r"epoch (\d+): .*\(([\d.]+) s\)")
#: The SVM baseline's front-ends by name (``--features``), as ``ser baseline --frontends`` takes
#: them; each is given ``normalize: false``, since the SVM pools every clip's raw statistics.
BASELINE_FRONTENDS = {
    "mfcc": {"class_path": "ser.transforms.MFCC"},
    "spectral": {
        "class_path": "ser.transforms.Handcrafted",
        "init_args": {"features": ["band_centroid", "band_bandwidth", "band_energy"]},
    },
    "handcrafted": {"class_path": "ser.transforms.Handcrafted"},
    "zcr_rms": {
        "class_path": "ser.transforms.Handcrafted",
        "init_args": {"features": ["zcr", "rms"]},
    },
    "logmel": {"class_path": "ser.transforms.LogMel"},
}


def parse_count(text: str) -> int:
    number, _, unit = text.strip().partition(" ")
    return round(float(number) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[unit.strip()])


def run_key(name: str, seed: int | None) -> str:
    """The run's name: its logger folder, log file and key in the results file."""
    return Path(name).name + ("" if seed is None else f"_seed{seed}")


def thread_env(jobs: int) -> dict[str, str]:
    """The environment of each run: its share of the cores (``OMP_NUM_THREADS``) when ``jobs``
    run at once, unless the caller set it."""
    env = dict(os.environ)
    if jobs > 1:
        env.setdefault("OMP_NUM_THREADS", str(threads_per_job(jobs)))
    return env


def run_model(
    name: str,
    data: str,
    root: str,
    out: Path,
    extra: list[str],
    seed: int | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    key = run_key(name, seed)
    seeding = [] if seed is None else ["--seed_everything", str(seed)]
    command = [
        sys.executable, "-m", "ser", "fit", "--config", f"configs/{name}.yaml", "--data", data,
        "--data.root", root, "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", key,
        *seeding, *extra,
    ]  # fmt: skip
    print("$ python", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    out.mkdir(parents=True, exist_ok=True)  # a run that fails at once made no folder
    (out / f"{key}.log").write_text(log)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see {out / f'{key}.log'}")
    versions = sorted((out / key).glob("version_*"), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((versions[-1] / "test" / "metrics.json").read_text())
    epochs = [float(s) for _, s in EPOCH.findall(log)]
    params = PARAMS.search(log)
    return {
        "model": name if seed is None else f"{name} (seed {seed})", "base": name, "seed": seed,
        "command": " ".join(["python", *command[1:]]),
        "uar": metrics["uar"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "params": parse_count(params.group(1)) if params else None, "wall_s": wall,
        "epochs": len(epochs), "s_per_epoch": sum(epochs) / len(epochs) if epochs else None,
        "ckpt": metrics.get("ckpt_path"),
    }  # fmt: skip


def baseline_frontend(name: str) -> dict:
    """The ``class_path``/``init_args`` of the baseline's front-end ``name``, not standardised."""
    spec = BASELINE_FRONTENDS[name]
    init_args = {**spec.get("init_args", {}), "normalize": False}
    return {"class_path": spec["class_path"], "init_args": init_args}


def feature_name(result: dict) -> str:
    """A baseline result's front-end name (``features`` in summaries written before ``name``)."""
    return result.get("name", result.get("features"))


def run_baseline(data: str, root: str, out: Path, features: list[str], extra: list[str]) -> dict:
    frontends = json.dumps([baseline_frontend(name) for name in features])
    command = [
        sys.executable, "-m", "ser", "baseline", "--data", data, "--data.root", root,
        "--frontends", frontends, "--C", "10", "--kernel", "rbf",
        "--out_dir", str(out / "baseline"), "--overwrite", "true", *extra,
    ]  # fmt: skip
    print("$ python", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "baseline.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed (exit {proc.returncode}); see {out / 'baseline.log'}")
    summary = json.loads((out / "baseline" / "summary.json").read_text())
    best = next(r for r in summary["results"] if feature_name(r) == summary["best"])
    return {
        "model": f"svm ({summary['best']})", "command": " ".join(["python", *command[1:]]),
        "uar": best["test"]["uar"], "accuracy": best["test"]["accuracy"],
        "macro_f1": best["test"]["macro_f1"], "params": None, "wall_s": wall, "epochs": None,
        "s_per_epoch": None, "per_feature": summary["results"],
    }  # fmt: skip


def wall_time(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def svm_rows(result: dict) -> list[dict]:
    """A baseline result as one row per feature type, the best (which holds the wall time) first."""
    rows = [
        {**result, "model": f"svm ({feature_name(f)})", **f["test"], "wall_s": None}
        for f in result["per_feature"]
    ]
    rows.sort(key=lambda row: row["model"] != result["model"])
    rows[0]["wall_s"] = result["wall_s"]
    return rows


def seed_summaries(rows: list[dict]) -> list[dict]:
    """One row per model run with several seeds: the mean and sample std of its test metrics."""
    runs: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("seed") is not None:
            runs.setdefault(r["base"], []).append(r)
    summaries = []
    for base, seeded in runs.items():
        if len(seeded) < 2:
            continue
        summary = {
            "model": f"{base} (mean +- std, {len(seeded)} seeds)", "params": seeded[0]["params"],
            "epochs": None, "s_per_epoch": None, "wall_s": None,
        }  # fmt: skip
        for metric in METRICS:
            values = [r[metric] for r in seeded]
            summary[metric] = (statistics.mean(values), statistics.stdev(values))
        summaries.append(summary)
    return summaries


def score(value: float | tuple[float, float]) -> str:
    """A metric, or a ``(mean, std)`` pair of a seed summary."""
    return f"{value[0]:.3f} +- {value[1]:.3f}" if isinstance(value, tuple) else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | test UAR | test accuracy | test macro F1 | parameters | epochs | s / epoch | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    flat = [row for r in rows for row in (svm_rows(r) if "per_feature" in r else [r])]
    flat += seed_summaries(flat)
    for r in flat:
        params = f"{r['params'] / 1e3:.0f} K" if r["params"] else "-"
        per_epoch = f"{r['s_per_epoch']:.1f}" if r["s_per_epoch"] else "-"
        wall = wall_time(r["wall_s"]) if r["wall_s"] is not None else ""
        lines.append(
            f"| {r['model']} | {score(r['uar'])} | {score(r['accuracy'])} | {score(r['macro_f1'])} | "
            f"{params} | {r['epochs'] or '-'} | {per_epoch} | {wall} |"
        )
    return "\n".join(lines)


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="corpus folder (--data.root)")
    parser.add_argument("--data", default="configs/data/ravdess.yaml", help="data config")
    parser.add_argument(
        "--models", nargs="+", default=[*MODELS, "baseline"],
        help=f"from {', '.join(MODELS)}, baseline, or any config under configs/ (recipes/...)",
    )  # fmt: skip
    parser.add_argument("--emotions", nargs="+", help="train and test on these classes only")
    parser.add_argument(
        "--features", nargs="+", default=["mfcc", "spectral", "handcrafted"],
        choices=list(BASELINE_FRONTENDS), help="front-ends of the SVM baseline, by name",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", nargs="+", type=int,
        help="train each model once per seed (--seed_everything) and add a mean +- std row",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="runs at once, each with cores / jobs torch threads (small nets gain less from a "
        "second thread than from a second run; docs/results.md gives the measured ratio)",
    )  # fmt: skip
    parser.add_argument("--out", default="lightning_logs/model_zoo", help="logs and results")
    parser.add_argument("--table", action="store_true", help="only print the table of results")
    parser.add_argument("extra", nargs="*", help="more `ser fit` arguments, after --")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    if not args.table:
        if not args.root:
            parser.error("--root is required to run models")
        for name in args.models:
            if name != "baseline" and not (REPO / "configs" / f"{name}.yaml").is_file():
                parser.error(f"--models {name}: no configs/{name}.yaml")
        subset = ["--data.emotions", "[" + ", ".join(args.emotions) + "]"] if args.emotions else []
        extra = [*subset, *args.extra]
        if args.jobs < 1:
            parser.error("--jobs must be at least 1")
        env = thread_env(args.jobs)
        saving = threading.Lock()

        def run(name: str, seed: int | None) -> None:
            if name == "baseline":
                result = run_baseline(args.data, args.root, out, args.features, subset)
            else:
                result = run_model(name, args.data, args.root, out, extra, seed, env)
            with saving:  # read again: another run may have added to the file meanwhile
                results = load_results(results_path) | {run_key(name, seed): result}
                results_path.write_text(json.dumps(results, indent=2) + "\n")
                print(table([result]), flush=True)

        runs = [
            (name, seed)
            for name in args.models
            for seed in ([None] if name == "baseline" else args.seeds or [None])
        ]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for done in [pool.submit(run, name, seed) for name, seed in runs]:
                done.result()  # a failed run stops here, with its log named
    results = load_results(results_path)
    order = [m for m in (*MODELS, "baseline") if m in results]
    order += sorted(m for m in results if m not in order)  # seeded runs finish in any order
    print(table([results[m] for m in order]))
    for m in order:
        print(f"{m}: {results[m]['command']}")


if __name__ == "__main__":
    main()
