"""Ensembles of trained checkpoints: each model, all of them, and a greedy pick by validation UAR.

An ensemble averages its members' class probabilities (:class:`ser.inference.Ensemble`, what
``ser predict MODEL --ensemble OTHER`` runs). Members are scored on the validation and test splits
of ``--data``: the clips ``ser test`` uses (centre crops of ``max_seconds``), or with ``--predict``
each whole recording as ``ser predict`` scores it (the mean over windows of ``--window`` seconds,
``--hop`` apart: ``ser predict``'s 4 s and 2 s unless given). The pick starts from
the best model by validation UAR and adds, one at a time, the model that raises the ensemble's
validation UAR most, until none does; the test split plays no part in it::

    python -m benchmarks.ensemble --root PATH/TO/RAVDESS --zoo lightning_logs/model_zoo
    python -m benchmarks.ensemble --root ... --ckpt cnn2d=PATH --ckpt vae=PATH

``--zoo`` takes the ``results.json`` of ``benchmarks/model_zoo.py`` (each run's best checkpoint;
repeat it to pool several, e.g. the zoo and a ``--seeds`` run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from benchmarks.data_path import markdown
from ser.baseline import confusion
from ser.confusion import metrics_from_confusion
from ser.data.base import SERDataModule
from ser.inference import clip_probabilities, load_model, predict_files


def checkpoints(zoos: list[str], pairs: list[str]) -> dict[str, str]:
    """``name -> checkpoint`` from model-zoo results files and ``NAME=PATH`` pairs."""
    found = {}
    for zoo in zoos:
        results = json.loads((Path(zoo) / "results.json").read_text())
        for name, result in results.items():
            if name in found:
                raise SystemExit(f"{name}: in two --zoo folders; pass one as --ckpt NAME=PATH")
            if result.get("ckpt"):
                found[name] = result["ckpt"]
    for pair in pairs:
        name, _, path = pair.partition("=")
        found[name] = path
    if len(found) < 2:
        raise SystemExit(f"an ensemble needs two or more checkpoints, found {sorted(found)}")
    return found


def recording_probabilities(model, paths: list[Path], window: float, hop: float) -> torch.Tensor:
    """``(N, n_classes)``: each recording's probabilities as :func:`predict_files` gives them."""
    predictions = predict_files(model, paths, window, hop, batch_size=32)
    if len(predictions) != len(paths):
        raise SystemExit(f"{len(paths) - len(predictions)} of the split's files were skipped")
    return torch.stack([p.probabilities for p in predictions])


def datamodule(data: str, root: str, *extra: str) -> SERDataModule:
    """The DataModule of config ``data`` on ``root`` (``extra``: more ``--data.X`` arguments), set up."""
    parser = ArgumentParser()
    parser.add_subclass_arguments(SERDataModule, "data")
    cfg = parser.parse_args(["--data", data, "--data.root", root, *extra])
    module = parser.instantiate_classes(cfg).data
    module.prepare_data()
    module.setup("fit")
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="corpus folder (--data.root)")
    parser.add_argument("--data", default="configs/data/ravdess.yaml")
    parser.add_argument(
        "--zoo", action="append", default=[],
        help="a model_zoo.py output folder (its results.json), repeatable",
    )  # fmt: skip
    parser.add_argument("--ckpt", action="append", default=[], help="NAME=PATH, repeatable")
    parser.add_argument(
        "--predict", action="store_true",
        help="score whole recordings as `ser predict` does, not the centre crops of `ser test`",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=float, default=4.0, help="with --predict: window length (s, default 4)"
    )
    parser.add_argument(
        "--hop", type=float, default=2.0, help="with --predict: step between windows (s, default 2)"
    )
    args = parser.parse_args()
    paths = checkpoints(args.zoo, args.ckpt)
    data = datamodule(args.data, args.root)
    names = data.class_names
    models = {name: load_model(path) for name, path in paths.items()}
    for name, model in models.items():
        if model.class_names != names or model.sample_rate != data.sample_rate:
            raise SystemExit(
                f"{name}: classes {model.class_names} at {model.sample_rate} Hz, the data's "
                f"{names} at {data.sample_rate} Hz"
            )
    labels, probabilities = {}, {}  # stage -> (N,); (name, stage) -> (N, n_classes)
    for stage in ("val", "test"):
        split = data.datasets[stage]
        labels[stage] = np.asarray(split.labels)
        if args.predict:
            paths = [clip.path for clip in split.clips]
        else:
            waves = [split[i]["waveform"] for i in range(len(split))]  # the centre crops, once
        for name, model in models.items():
            probabilities[name, stage] = (
                recording_probabilities(model, paths, args.window, args.hop)
                if args.predict
                else clip_probabilities(model, waves, torch.device("cpu"))
            )

    def score(members: list[str], stage: str) -> dict:
        # The mean of the members' probabilities: what Ensemble computes, without re-running them.
        mean = torch.stack([probabilities[m, stage] for m in members]).mean(dim=0)
        predicted = mean.argmax(dim=1).numpy()
        return metrics_from_confusion(confusion(labels[stage], predicted, len(names)), names)

    def val_uar(members: list[str]) -> float:
        return score(members, "val")["uar"]

    ranked = sorted(models, key=lambda m: val_uar([m]), reverse=True)
    picked, picked_uar = ranked[:1], val_uar(ranked[:1])
    while rest := [m for m in ranked if m not in picked]:
        gains = {m: val_uar([*picked, m]) for m in rest}  # in rank order: ties go to the better
        best = max(gains, key=gains.get)
        if gains[best] <= picked_uar:
            break
        picked, picked_uar = [*picked, best], gains[best]
    groups = {m: [m] for m in ranked}
    groups["all: " + " + ".join(ranked)] = ranked
    groups["picked by val: " + " + ".join(picked)] = picked
    table = []
    for label, group in groups.items():
        val, test = score(group, "val"), score(group, "test")
        table.append(
            [label]
            + [f"{x:.3f}" for x in (val["uar"], test["uar"], test["accuracy"], test["macro_f1"])]
        )
    header = ["models", "val UAR", "test UAR", "test accuracy", "test macro F1"]
    print(markdown(header, table))


if __name__ == "__main__":
    main()
