"""``ser cv --protocol matrix``: the cross-corpus train -> test matrix on a toy RAVDESS and a toy
EmoDB (their real layouts), whose emotions are the same tones in both corpora."""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest

from ser.__main__ import main as ser_main
from ser.errors import SERError
from ser.matrix import format_matrix, summarise, train_sets

from .helpers import CONFIG, REPO, TONES, write_corpus, write_ravdess

CROSS_YAML = str(REPO / "configs" / "data" / "cross_corpus.yaml")
ACTORS = (1, 2, *range(15, 25))
EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
#: EmoDB letters of RAVDESS's toy emotions (the same tones), and one the matrix leaves out.
EMODB_TONES = {"N": TONES["01"], "F": TONES["03"], "T": TONES["04"], "W": TONES["05"], "L": 3000.0}


def write_emodb(root: Path) -> Path:
    names = [f"wav/{s}a0{t}{e}a.wav" for s in EMODB_SPEAKERS for e in EMODB_TONES for t in (1, 2)]
    return write_corpus(root, names, {f"{e}a.wav": f for e, f in EMODB_TONES.items()})


def matrix_args(tmp_path: Path, *extra: str) -> list[str]:
    # the actors the committed config names: training 1-2, validation 15-18, test 19-24
    ravdess = write_ravdess(tmp_path / "ravdess", actors=ACTORS, clips_per_emotion=1)
    emodb = write_emodb(tmp_path / "emodb")
    return ["cv", "--protocol", "matrix", "--config", CONFIG, "--data", CROSS_YAML,
            "--data.roots", json.dumps({"ravdess": str(ravdess), "emodb": str(emodb)}),
            "--data.batch_size", "8", "--data.max_seconds", "0.5", "--trainer.max_epochs", "4",
            "--trainer.enable_model_summary", "false", "--out", str(tmp_path / "m"), *extra]  # fmt: skip


def test_matrix_trains_on_each_corpus_and_tests_on_every_clip_of_the_other(
    tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ser", "cv", "--protocol", "matrix"])  # as from a shell
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ser_main(matrix_args(tmp_path, "--seeds", "0"))
    # each run's fit is given its arguments, not the command line's: no LightningCLI warning
    assert not [w for w in caught if "args parameter is intended" in str(w.message)]
    out = tmp_path / "m"
    runs = json.loads((out / "results.json").read_text())
    assert sorted((r["train"], r["seed"]) for r in runs) == [(["emodb"], 0), (["ravdess"], 0)]
    for run in runs:
        metrics = json.loads((Path(run["log_dir"]) / "test" / "metrics.json").read_text())
        assert metrics["class_names"] == ["neutral", "happy", "sad", "angry"]  # default 4 classes
        (trained,) = run["train"]
        other = "emodb" if trained == "ravdess" else "ravdess"
        # in-corpus: the held-out speakers only; across: every clip of the 4 classes
        assert run["cells"][other]["n_clips"] == (10 * 4 * 2 if other == "emodb" else 12 * 4)
        assert run["cells"][trained]["n_clips"] == (6 * 4 if trained == "ravdess" else 2 * 4 * 2)
    rows = {(r["train"], r["test"]): r for r in csv.DictReader((out / "matrix.csv").open())}
    assert set(rows) == {(a, b) for a in ("ravdess", "emodb") for b in ("ravdess", "emodb")}
    cell = rows[("ravdess", "emodb")]
    (uar,) = [r["cells"]["emodb"]["uar"] for r in runs if r["train"] == ["ravdess"]]
    assert float(cell["uar_mean"]) == pytest.approx(uar, abs=1e-4)
    assert cell["in_corpus"] == "False" and rows[("emodb", "emodb")]["in_corpus"] == "True"
    assert float(cell["chance_uar"]) == 0.25
    assert float(cell["chance_accuracy"]) == pytest.approx(0.25)  # 20 clips of each class
    assert float(cell["uar_mean"]) > 0.5  # the same tones: what it learnt carries over
    assert (out / "matrix.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "train \\ test" in printed and "chance" in printed
    ser_main(matrix_args(tmp_path, "--seeds", "0"))  # a rerun resumes: nothing left to train
    assert "trained on" not in capsys.readouterr().out
    assert len(list((out).glob("*_seed0/version_*"))) == 2


def test_matrix_rows_and_table():
    assert train_sets(["a", "b"]) == [["a"], ["b"]]
    assert train_sets(["a", "b", "c"])[3:] == [["b", "c"], ["a", "c"], ["a", "b"]]
    runs = [{"train": ["a"], "seed": s, "n_classes": 4,
             "cells": {"a": {"uar": 0.8, "accuracy": 0.8, "chance_accuracy": 0.3, "n_clips": 10},
                       "b": {"uar": u, "accuracy": u, "chance_accuracy": 0.4, "n_clips": 20}}}
            for s, u in ((0, 0.4), (1, 0.6))]  # fmt: skip
    rows = summarise(runs, ["a", "b"])
    across = next(r for r in rows if r["test"] == "b")
    assert across["uar_mean"] == pytest.approx(0.5) and across["uar_std"] == pytest.approx(
        0.1414, abs=1e-4
    )
    assert not across["in_corpus"] and rows[0]["in_corpus"]
    table = format_matrix(rows, ["a", "b"])
    assert "0.500+-0.141" in table and "0.800+-0.000 / 0.800*" in table


def test_matrix_needs_pooled_corpora(tmp_path: Path):
    from ser.cv import main as cv_main

    ravdess = write_ravdess(tmp_path / "ravdess")
    with pytest.raises(SERError, match="--protocol matrix needs pooled corpora"):
        cv_main(["--protocol", "matrix", "--config", CONFIG, "--data",
                 str(REPO / "configs" / "data" / "ravdess.yaml"), "--data.root", str(ravdess)])  # fmt: skip
