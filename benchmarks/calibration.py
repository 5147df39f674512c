"""Expected calibration error before and after temperature scaling, on checkpoints of earlier runs.

For each checkpoint (a copy of it, written into ``--out``): ``ser test --calibrate false`` (the
net's own probabilities), then ``ser test --recalibrate true`` (temperature fitted on the run's
validation split and written into the copy, then the test); each run's own ``config.yaml`` gives
the data and split. Prints test UAR, accuracy and ECE of both, and the temperature::

    python benchmarks/calibration.py lightning_logs/cnn2d_seed*/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ser_test(checkpoint: Path, out: Path, name: str, *extra: str) -> dict:
    """``ser test`` of ``checkpoint`` with its run's config; its ``metrics.json``."""
    command = [
        sys.executable, "-m", "ser", "test", "--config", str(checkpoint.parents[1] / "config.yaml"),
        "--ckpt_path", str(checkpoint), "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name,
        *extra,
    ]  # fmt: skip
    print("$ python", " ".join(command[1:]), flush=True)
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"ser test failed (exit {proc.returncode}); see {out / f'{name}.log'}")
    versions = sorted((out / name).glob("version_*"), key=lambda p: p.stat().st_mtime)
    return json.loads((versions[-1] / "test" / "metrics.json").read_text())


def table(rows: list[dict]) -> str:
    lines = [
        f"{'run':<14} {'T':>6}  {'UAR':>6} {'UAR cal':>7}  {'acc':>6} {'acc cal':>7}  "
        f"{'ECE':>6} {'ECE cal':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r['run']:<14} {r['temperature']:>6.3f}  {r['uar']:>6.4f} {r['uar_cal']:>7.4f}  "
            f"{r['accuracy']:>6.4f} {r['accuracy_cal']:>7.4f}  {r['ece']:>6.4f} {r['ece_cal']:>7.4f}"
        )
    if len(rows) > 1:

        def stat(key: str) -> str:
            values = [r[key] for r in rows]
            return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"

        lines.append(
            f"mean +- std over {len(rows)} runs: temperature {stat('temperature')}, "
            f"UAR {stat('uar')} -> {stat('uar_cal')}, ECE {stat('ece')} -> {stat('ece_cal')}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of `ser fit` runs")
    parser.add_argument("--out", type=Path, default=Path("lightning_logs/calibration"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.json"  # runs measured before are kept, not measured again
    rows = json.loads(results.read_text()) if results.is_file() else []
    for checkpoint in args.checkpoints:
        run = checkpoint.parents[2].name  # <save_dir>/<name>/version_N/checkpoints/x.ckpt
        if any(r["run"] == run for r in rows):
            continue
        copy = args.out / run / "checkpoints" / checkpoint.name  # parents[1]: config beside it
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, copy)
        shutil.copy(checkpoint.parents[1] / "config.yaml", copy.parents[1] / "config.yaml")
        raw = ser_test(copy, args.out, f"{run}_raw", "--calibrate", "false")
        calibrated = ser_test(copy, args.out, f"{run}_cal", "--recalibrate", "true")
        rows.append({
            "run": run, "temperature": calibrated["temperature"],
            **{k: raw[k] for k in ("uar", "accuracy", "ece")},
            **{f"{k}_cal": calibrated[k] for k in ("uar", "accuracy", "ece")},
        })  # fmt: skip
        results.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    os.nice(5)
    main()
