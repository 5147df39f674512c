"""Robustness to recording conditions, printed as Markdown tables.

1. UAR of trained runs on their test split under white noise at 20/10/5/0 dB SNR, reverberation
   (RT60 0.3/0.6/1.0 s), the telephone band and the Opus codec at its lowest bitrate (about 7
   kb/s), each run scored
   by ``ser test --perturb CONDITION`` on its last checkpoint; runs given under one label (seeds)
   are averaged (mean +- std). With ``--plot``, UAR against SNR per label.
2. ``--cost``: the time each waveform augmentation of ``configs/robust.yaml``
   takes on a batch of 32 clips of 3 s at 16 kHz on this machine (median of 5 after a warm-up).

Run from the repository root::

    python -m benchmarks.robustness --runs plain=RUN0,RUN1,RUN2 robust=RUN3,RUN4,RUN5 \\
        [--corpus ravdess] [--conditions clean "noise 10"] [--plot docs/robustness.png] [--cost]

A run is a folder ``ser fit`` wrote (``config.yaml``, ``checkpoints/last.ckpt``); ``--corpus``
picks one corpus's figures in a pooled run; other options go to every ``ser test`` (e.g.
``--data configs/data/ravdess.yaml --data.root PATH`` to test a pooled run on RAVDESS alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ["clean", "noise 20", "noise 10", "noise 5", "noise 0", "reverb 0.3", "reverb 0.6",
              "reverb 1.0", "telephone", "opus 1.0"]  # fmt: skip


def score(run: Path, condition: str, corpus: str | None, out: Path, extra: list[str]) -> float:
    """The run's test UAR under ``condition`` (``clean``: as recorded)."""
    from ser.cli import main

    args = ["test", "--config", str(run / "config.yaml"),
            "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.logger.init_args.save_dir", str(out),
            "--trainer.logger.init_args.name", "robustness",
            "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    if condition != "clean":
        args += ["--perturb", condition]
    cli = main(args)
    metrics = json.loads((Path(cli.trainer.log_dir) / "test" / "metrics.json").read_text())
    return metrics["per_corpus"][corpus]["uar"] if corpus else metrics["uar"]


def robustness_table(labels: dict[str, list[Path]], corpus: str | None, extra: list[str],
                     conditions: list[str] = CONDITIONS) -> dict:  # fmt: skip
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, runs in labels.items():
            for condition in conditions:
                results.setdefault(condition, {})[label] = [
                    score(run, condition, corpus, Path(tmp), extra) for run in runs
                ]
    print(f"\n| condition | {' | '.join(labels)} |\n|---|{'---|' * len(labels)}")
    for condition, row in results.items():
        cells = []
        for label in labels:
            values = row[label]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} +- {spread:.3f}")
        print(f"| {condition} | {' | '.join(cells)} |")
    return results


def plot(results: dict, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = [("clean", 40), ("noise 20", 20), ("noise 10", 10), ("noise 5", 5), ("noise 0", 0)]
    snrs = [(c, snr) for c, snr in snrs if c in results]  # the conditions scored
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for label in labels:
        means = [statistics.mean(results[c][label]) for c, _ in snrs]
        axes.plot([s for _, s in snrs], means, marker="o", label=label)
    axes.set_xticks([s for _, s in snrs], [c.removeprefix("noise ") for c, _ in snrs])
    axes.invert_xaxis()
    axes.set_xlabel("SNR of added white noise (dB)")
    axes.set_ylabel("UAR")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def cost_table() -> None:
    config = yaml.safe_load((REPO / "configs/robust.yaml").read_text())["data"]
    wave = torch.randn(32, 48000) * 0.1
    lengths = torch.full((32,), 48000)
    print("\n| augmentation (p = 1) | ms per batch of 32 x 3 s |\n|---|---|")
    for entry in config["init_args"]["augment"]["waveform"]:
        entry = {**entry, "init_args": {**entry["init_args"], "p": 1.0}}
        name = entry["class_path"].rpartition(".")[2]
        augment = _build(entry)
        times = []
        for i in range(6):
            start = time.perf_counter()
            augment(wave, lengths, 16000)
            if i:  # the first call warms up (and simulates a room bank)
                times.append(time.perf_counter() - start)
        kind = entry["init_args"].get("kind", "")
        print(f"| {name}{f' ({kind})' if kind else ''} | {1000 * statistics.median(times):.1f} |")


def _build(entry: dict):
    import importlib

    module, _, name = entry["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**entry["init_args"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=[], help="LABEL=RUN[,RUN...] (run folders)")
    parser.add_argument("--corpus", help="a pooled run's corpus whose test figures to take")
    parser.add_argument("--plot", type=Path, help="write UAR against SNR here (PNG)")
    parser.add_argument("--cost", action="store_true", help="time each augmentation")
    parser.add_argument("--conditions", nargs="+", default=CONDITIONS, metavar="CONDITION",
                        help="the conditions to score (default: all of table 1)")  # fmt: skip
    args, extra = parser.parse_known_args()  # the rest goes to every ser test
    torch.set_num_threads(1)
    labels = {}
    for item in args.runs:
        label, _, runs = item.partition("=")
        labels[label] = [Path(r) for r in runs.split(",")]
    if labels:
        results = robustness_table(labels, args.corpus, extra, args.conditions)
        if args.plot:
            plot(results, list(labels), args.plot)
    if args.cost:
        cost_table()


if __name__ == "__main__":
    main()
