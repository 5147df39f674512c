"""Distillation: students against the same net trained alone and against their teachers' ensemble,
on the test split of ``--data``, with each model's size and speed.

Every checkpoint is scored as ``ser test`` scores it (each clip's centre crop) and as ``ser predict``
scores it (each whole recording, probabilities averaged over windows); a ``--group`` row gives the
mean +- standard deviation over its checkpoints (e.g. seeds), an ``--ensemble`` row the mean of its
members' probabilities (what ``ser predict --ensemble`` computes). Speed: milliseconds per 4 s
window (batch of 1, one thread, best of 20 after a warm-up, the models taking turns), features
included::

    python -m benchmarks.distill table --root PATH/TO/RAVDESS \\
        --group 'CNN2D alone=runs/cnn2d_seed*/version_0/checkpoints/last.ckpt' \\
        --group 'CNN2D student=runs/distill_seed*/version_0/checkpoints/last.ckpt' \\
        --ensemble 'teachers=runs/cnn2d_seed*/version_0/checkpoints/last.ckpt'

``warm`` fills the teachers' caches of distillation (:mod:`ser.tasks.teacher`) for every training
crop a student of ``--student`` (default ``configs/distill.yaml``: its crop positions and speed
copies) can draw, before several students start at once (a distillation run also fills them as it
goes)::

    python -m benchmarks.distill warm --root PATH --teachers 'runs/cnn2d_seed*/.../last.ckpt'
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time

import numpy as np
import torch

from benchmarks.data_path import markdown
from benchmarks.ensemble import datamodule, recording_probabilities
from ser.baseline import confusion
from ser.confusion import metrics_from_confusion
from ser.explore import data_arguments
from ser.inference import clip_probabilities, load_model, load_models
from ser.tasks.teacher import Teacher


def expand(pattern: str) -> list[str]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"{pattern}: no checkpoint matches")
    return paths


def named(pairs: list[str]) -> dict[str, list[str]]:
    """``NAME=GLOB`` pairs -> name -> checkpoints."""
    groups = {}
    for pair in pairs:
        name, sep, pattern = pair.partition("=")
        if not sep:
            raise SystemExit(f"{pair}: expected NAME=GLOB")
        groups[name] = expand(pattern)
    return groups


def window_ms(models: list, sample_rate: int, rounds: int = 20) -> list[float]:
    """Best-of-``rounds`` milliseconds of one 4 s window through each model (features included);
    the models take turns, so that a change in the machine's load reaches all of them alike."""
    wave = torch.randn(1, 4 * sample_rate) * 0.1
    best = [float("inf")] * len(models)
    with torch.inference_mode():
        for model in models:  # warm-up
            model(wave)
        for _ in range(rounds):
            for i, model in enumerate(models):
                start = time.perf_counter()
                model(wave)
                best[i] = min(best[i], time.perf_counter() - start)
    return [1000 * b for b in best]


def n_params(model) -> int:
    members = getattr(model, "members", [model])
    return sum(p.numel() for m in members for p in m.net.parameters())


def table(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    groups, ensembles = named(args.group), named(args.ensemble)
    data = datamodule(args.data, args.root)
    names, split = data.class_names, data.datasets["test"]
    labels = np.asarray(split.labels)
    crops = [split[i]["waveform"] for i in range(len(split))]  # the centre crops of `ser test`
    paths = [clip.path for clip in split.clips]
    scored: dict[str, dict[str, torch.Tensor]] = {}  # checkpoint -> scoring -> (N, n_classes)
    for path in sorted({p for group in (*groups.values(), *ensembles.values()) for p in group}):
        model = load_model(path)
        with torch.inference_mode():
            scored[path] = {
                "crops": clip_probabilities(model, crops, torch.device("cpu")),
                "recordings": recording_probabilities(model, paths, args.window, args.hop),
            }

    def metrics(probabilities: torch.Tensor) -> dict:
        predicted = probabilities.argmax(dim=1).numpy()
        return metrics_from_confusion(confusion(labels, predicted, len(names)), names)

    def mean_sd(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} +- {sd:.3f}"

    rows, per_run, speed_models = [], [], []
    for name, members in [*groups.items(), *ensembles.items()]:
        is_ensemble = name in ensembles and name not in groups
        if is_ensemble:  # the mean of the members' probabilities, as Ensemble computes it
            runs = [{s: torch.stack([scored[p][s] for p in members]).mean(0)
                     for s in ("crops", "recordings")}]  # fmt: skip
        else:
            runs = [scored[p] for p in members]
        results = {s: [metrics(r[s]) for r in runs] for s in ("crops", "recordings")}
        speed_model = load_models(members) if is_ensemble else load_model(members[0])
        speed_models.append(speed_model)
        rows.append([
            name + (f" ({len(members)} members)" if is_ensemble else ""), len(runs),
            f"{n_params(speed_model) / 1e3:.0f}k",
            *(mean_sd([m[key] for m in results[s]])
              for s in ("crops", "recordings") for key in ("uar", "accuracy")),
        ])  # fmt: skip
        if not is_ensemble:
            for path, crop, recording in zip(
                members, results["crops"], results["recordings"], strict=True
            ):
                per_run.append([name, path, f"{crop['uar']:.3f}", f"{recording['uar']:.3f}"])
    for name, (path, *_) in named(args.speed).items():
        speed_models.append(load_model(path))
        rows.append([name, 0, f"{n_params(speed_models[-1]) / 1e3:.0f}k", *["-"] * 4])
    speeds = window_ms(speed_models, data.sample_rate)
    for row, ms in zip(rows, speeds, strict=True):  # the ratio: measured in this run
        row += [f"{ms:.1f}", f"{ms / speeds[0]:.2f}x"]
    header = ["model", "runs", "params", "UAR (crops)", "accuracy (crops)", "UAR (recordings)",
              "accuracy (recordings)", "ms per 4 s window", "time vs first row"]  # fmt: skip
    print(markdown(header, rows))
    print()
    print(markdown(["model", "checkpoint", "UAR (crops)", "UAR (recordings)"], per_run))


def warm(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    extra = data_arguments(args.student)  # the student config's crops and copies
    if args.crop_positions is not None:
        extra += ["--data.crop_positions", str(args.crop_positions)]
    data = datamodule(args.data, args.root, *extra)
    train = data.datasets["train"]
    crops = [c for i in range(len(train)) for c in train.training_crops(i)]
    for path in expand(args.teachers):
        start = time.perf_counter()
        teacher = Teacher([path], data.class_names, data.sample_rate)
        for first in range(0, len(crops), 64):
            teacher.log_probs(crops[first : first + 64])
        teacher.save()
        print(f"{path}: {teacher.misses} of {len(crops)} crops computed, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("table", "warm"):
        sub = commands.add_parser(command)
        sub.add_argument("--root", required=True, help="corpus folder (--data.root)")
        sub.add_argument("--data", default="configs/data/ravdess.yaml")
    table_args, warm_args = commands.choices["table"], commands.choices["warm"]
    table_args.add_argument("--group", action="append", default=[], help="NAME=GLOB, repeatable")
    table_args.add_argument(
        "--ensemble", action="append", default=[], help="NAME=GLOB of members, repeatable"
    )
    table_args.add_argument(
        "--speed", action="append", default=[],
        help="NAME=GLOB: size and speed only (e.g. a net not trained yet), repeatable",
    )  # fmt: skip
    table_args.add_argument("--window", type=float, default=4.0, help="recordings: window (s)")
    table_args.add_argument("--hop", type=float, default=2.0, help="recordings: hop (s)")
    warm_args.add_argument("--teachers", required=True, help="GLOB of teacher checkpoints")
    warm_args.add_argument(
        "--student", default="configs/distill.yaml",
        help="the students' distillation config: its data section sets the crops to score",
    )  # fmt: skip
    warm_args.add_argument(
        "--crop-positions", type=int, default=None,
        help="the students' --data.crop_positions, if not the --student config's",
    )  # fmt: skip
    args = parser.parse_args()
    (table if args.command == "table" else warm)(args)


if __name__ == "__main__":
    main()
