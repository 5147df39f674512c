"""What the imbalance options do to UAR on a deliberately imbalanced RAVDESS; print one table.

The training split (actors 1-14) keeps only ``--keep`` of the clips of the ``--reduce`` classes;
validation (15-18) and test (19-24) stay whole, as in ``configs/data/ravdess.yaml``. The subset is
a CSV manifest written into ``--out`` (``ser fit --data configs/data/manifest.yaml`` reads it with
``--data.split.protocol predefined``), so any run can be repeated by hand. Each setting trains
``configs/cnn2d.yaml`` once per seed:

- ``default``: every training clip once per epoch, unweighted cross-entropy
- ``weighted``: ``--model.init_args.class_weights balanced``
- ``sampler``: ``--data.balance_classes true``
- ``mixup``: ``--data configs/data/augment/mixup.yaml``, unweighted
- ``mixup_weighted``: mixup and balanced class weights: each soft target's loss divided by the
  sum of its examples' class weights, as the hard-label loss is
- ``mixup_weighted_mean``: the same with the loss before that fix, ``F.cross_entropy``'s soft-target
  mean over the batch size (:class:`BatchMeanSoftLoss`, kept here only as the control)

``--model`` names the recipe in ``configs/`` (``cnn2d``; ``voice`` trains in minutes). Runs go two at a time (``--jobs``), niced; results merge into ``--out/results.json``::

    python -m benchmarks.imbalance --root path/to/RAVDESS --seeds 0 1 2
    python -m benchmarks.imbalance --root path/to/RAVDESS --model voice --out lightning_logs/mixup \
        --settings weighted mixup mixup_weighted mixup_weighted_mean
    python -m benchmarks.imbalance --out lightning_logs/imbalance --table
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.model_zoo import run_model
from ser.data import RAVDESS
from ser.tasks import EmotionClassifier

WEIGHTED = ["--model.init_args.class_weights", "balanced"]
MIXUP = ["--data", "configs/data/augment/mixup.yaml"]
SETTINGS = {
    "default": [],
    "weighted": WEIGHTED,
    "sampler": ["--data.balance_classes", "true"],
    "mixup": MIXUP,
    "mixup_weighted": MIXUP + WEIGHTED,
    "mixup_weighted_mean": [
        *MIXUP,
        *WEIGHTED,
        "--model.class_path",
        "benchmarks.imbalance.BatchMeanSoftLoss",
    ],
}


class BatchMeanSoftLoss(EmotionClassifier):
    """The control: ``F.cross_entropy`` as it is, whose weighted soft-target loss is divided by
    the batch size (a weighted hard-label loss by the sum of the weights)."""

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        target = batch.get("target", batch["label"])
        return F.cross_entropy(
            logits, target, weight=self.loss_weights, label_smoothing=self.hparams.label_smoothing
        )


#: The speaker-independent split of configs/data/ravdess.yaml.
TEST_SPEAKERS = {"19", "20", "21", "22", "23", "24"}
VAL_SPEAKERS = {"15", "16", "17", "18"}


def write_manifest(root: str, out: Path, reduce: list[str], keep: float, seed: int = 0) -> Path:
    """RAVDESS as a manifest with a split column; ``keep`` of each ``reduce`` class's training
    clips (drawn with ``seed``), everything else whole."""
    clips = RAVDESS(root, verify=False).clips()
    rng = random.Random(seed)
    rows = []
    for emotion in sorted({c.emotion for c in clips}):
        for clip in (c for c in clips if c.emotion == emotion):
            stage = (
                "test"
                if clip.speaker in TEST_SPEAKERS
                else "val"
                if clip.speaker in VAL_SPEAKERS
                else "train"
            )
            rows.append((clip, stage))
    kept = []
    for emotion in reduce:
        train = [r for r in rows if r[0].emotion == emotion and r[1] == "train"]
        if not train:
            raise SystemExit(f"--reduce {emotion}: not a RAVDESS emotion")
        dropped = set(rng.sample(range(len(train)), len(train) - round(keep * len(train))))
        kept += [r for i, r in enumerate(train) if i not in dropped]
    rows = [r for r in rows if r[1] != "train" or r[0].emotion not in reduce] + kept
    path = out / "manifest.csv"
    out.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker", "split"])
        for clip, stage in sorted(rows, key=lambda r: str(r[0].path)):
            writer.writerow([str(clip.path.resolve()), clip.emotion, clip.speaker, stage])
    return path


def table(results: dict, reduce: list[str]) -> str:
    """Mean +- std over seeds of UAR and accuracy, and the mean recall of each reduced class."""
    head = f"{'setting':<19} seeds  {'UAR':>13}  {'accuracy':>13}  " + "  ".join(
        f"{'recall ' + c:>16}" for c in reduce
    )
    lines = [head]
    for setting in SETTINGS:
        runs = [r for r in results.values() if r["setting"] == setting]
        if not runs:
            continue

        def stat(values: list[float]) -> str:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.3f} +- {std:.3f}"

        recalls = "  ".join(
            f"{statistics.mean(r['recall'][c] for r in runs):>16.3f}" for c in reduce
        )
        lines.append(
            f"{setting:<19} {len(runs):>5}  {stat([r['uar'] for r in runs]):>13}  "
            f"{stat([r['accuracy'] for r in runs]):>13}  {recalls}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="RAVDESS folder (Actor_01..24)")
    parser.add_argument("--out", type=Path, default=Path("lightning_logs/imbalance"))
    parser.add_argument("--model", default="cnn2d", help="recipe: configs/MODEL.yaml")
    parser.add_argument("--reduce", nargs="+", default=["sad", "fearful"])
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--settings", nargs="+", choices=list(SETTINGS), default=["default", "weighted", "sampler"]
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument("extra", nargs="*", help="more `ser fit` arguments, after --")
    args = parser.parse_args()
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if not args.table:
        if args.root is None:
            raise SystemExit("--root is required to train")
        manifest = write_manifest(args.root, args.out, args.reduce, args.keep)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        lock = threading.Lock()

        def one(setting: str, seed: int) -> None:
            extra = [
                "--data.manifest", str(manifest), "--data.split.protocol", "predefined",
                "--data.max_seconds", "3.0", *SETTINGS[setting], *args.extra,
            ]  # fmt: skip
            run = run_model(args.model, "configs/data/manifest.yaml", str(args.out), args.out / setting,
                            extra, seed, env)  # fmt: skip
            metrics = json.loads(
                (Path(run["ckpt"]).parents[1] / "test" / "metrics.json").read_text()
            )
            run.update(
                setting=setting, recall={c: metrics["per_class"][c]["recall"] for c in args.reduce}
            )
            with lock:
                results[f"{setting}_seed{seed}"] = run
                results_path.write_text(json.dumps(results, indent=2) + "\n")

        jobs = [(s, seed) for seed in args.seeds for s in args.settings]
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(one, s, seed) for s, seed in jobs]:
                future.result()
    print(table(results, args.reduce))


if __name__ == "__main__":
    os.nice(5)
    main()
