"""Mutation testing of the core modules with mutmut 3, one module at a time (docs/testing.md).

Each module is mutated in its own folder ``.mutation/<name>/`` (links to ``ser/`` and ``tests/``,
and a ``pyproject.toml`` whose ``[tool.mutmut]`` names that module and the fast tests that cover
it), so a run touches one module with its own tests only, keeps its results between runs (mutmut
resumes where it stopped and retests what changed), and never enters the default test run.

    python benchmarks/mutation.py splits audio      # mutate these modules (see MODULES)
    python benchmarks/mutation.py --report          # killed / survived / timeout per module
    python benchmarks/mutation.py --survivors loss  # the surviving mutants' names

A survivor's diff: ``cd .mutation/<name> && mutmut show <mutant>``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"

#: name -> (files to mutate, pytest arguments selecting the fast tests that cover them)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "splits": (["ser/data/splits.py"], ["tests/test_splits.py"]),
    "audio": (
        ["ser/audio.py"],
        [
            "tests/test_audio.py",
            "tests/test_long_recordings.py",
            "-k",
            "not vad and not plot and not resampled[1-",  # block=1: a minute a mutant
        ],
    ),
    "calibration": (  # the tests that fit and calibrate a model take 10-20 s each: left out
        ["ser/calibration.py"],
        ["tests/test_calibration.py", "-k", "overconfident or underconfident or temperature_range"],
    ),
    "loss": (
        ["ser/tasks/classification.py", "ser/tasks/metrics.py"],
        [
            "tests/test_imbalance.py",
            "tests/test_classification_task.py",
            "tests/test_reliability.py::test_uar_is_one_figure_whether_logged_or_reported",
            "-k",
            "not reaches_the_training_loader",
        ],
    ),
    "normalize": (["ser/transforms/normalize.py"], ["tests/test_normalize.py"]),
    "frontends": (["ser/transforms/frontends.py"], ["tests/test_frontends.py"]),
    "augment": (["ser/transforms/augment.py"], ["tests/test_augment.py"]),
    "pipeline": (
        ["ser/transforms/pipeline.py"],
        ["tests/test_pipeline.py", "tests/test_augment.py"],
    ),
    "ood": (["ser/inference/ood.py"], ["tests/test_ood.py"]),
    "predict": (
        ["ser/inference/predict.py", "ser/inference/grouping.py"],
        [
            "tests/test_predict.py",
            "tests/test_long_recordings.py",
            "tests/test_ood.py",
            "tests/test_normalize.py::test_speaker_normalised_model_predicts_a_folder_as_ser_test_scores_its_speaker",
            "-k",
            "not import_lightning and not plot and not resampled[1-",
        ],
    ),  # fmt: skip
    "checkpointing": (  # the encoder-weight tests of test_payloads trip a logging clash in mutmut
        ["ser/checkpointing.py"],
        ["tests/test_faults.py", "tests/test_payloads.py", "-k", "checkpoint or resume or last"],
    ),
}


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def prepare(name: str) -> Path:
    """``.mutation/<name>/`` with links to the tree and the module's ``[tool.mutmut]``."""
    files, selection = MODULES[name]
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for part in ("ser", "tests", "configs"):
        if not (work / part).is_symlink():
            (work / part).symlink_to(ROOT / part)
    config = (
        f'\n[tool.mutmut]\nsource_paths = ["ser"]\nonly_mutate = {toml_list(files)}\n'
        f"pytest_add_cli_args_test_selection = {toml_list(selection)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
        'also_copy = ["configs"]\n'
    )
    text = (ROOT / "pyproject.toml").read_text() + config
    path = work / "pyproject.toml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return work


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the mutants/ copy of ser must be the one imported
    command = [sys.executable, "-m", "mutmut", *args]
    return subprocess.run(command, cwd=work, env=env, text=True, capture_output=capture)


def statuses(name: str) -> dict[str, str]:
    """Each mutant's status (killed, survived, timeout, no tests...) from the last run."""
    work = WORK / name
    if not (work / "mutants").exists():
        return {}
    out = mutmut(work, "results", "--all", "true", capture=True).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    return {mutant: status for mutant, status in pairs}


def report(names: list[str]) -> None:
    print("| module | files | mutants | killed | survived | timeout | no tests | other | score |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        counts = collections.Counter(statuses(name).values())
        total = sum(counts.values())
        if not total:
            continue
        killed, survived, timeout = counts["killed"], counts["survived"], counts["timeout"]
        untested = counts["no tests"]
        other = total - killed - survived - timeout - untested
        score = f"{100 * (killed + timeout) / total:.0f} %"  # a mutant no test runs survives
        files = ", ".join(MODULES[name][0])
        print(f"| {name} | {files} | {total} | {killed} | {survived} | {timeout} | {untested} "
              f"| {other} | {score} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate: {', '.join(MODULES)}")
    parser.add_argument("--report", action="store_true", help="print the scores per module")
    parser.add_argument("--survivors", nargs="*", help="list the survivors of these modules")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once")
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {', '.join(MODULES)}")
    for name in args.modules:
        work = prepare(name)
        run = mutmut(work, "run", "--max-children", str(args.max_children))
        if run.returncode:
            sys.exit(f"mutmut run failed for {name} (exit {run.returncode})")
    if args.survivors is not None:
        for name in args.survivors or list(MODULES):
            for mutant, status in sorted(statuses(name).items()):
                if status != "killed":
                    print(f"{name}\t{status}\t{mutant}")
    if args.report or args.modules:
        report(list(MODULES))


if __name__ == "__main__":
    main()
