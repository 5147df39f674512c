"""``ser cv``: every speaker fold trained and tested once, mean +- std and the pooled matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser.__main__ import main as ser_main
from ser.errors import SERError

from .helpers import CONFIG, RAVDESS_YAML, error_line, write_ravdess

FIT = ["--data.emotions", "[neutral, happy, sad, angry]", "--data.batch_size", "4",
       "--data.max_seconds", "0.5", "--trainer.max_epochs", "1"]  # fmt: skip


def test_cv_tests_every_speaker_once_and_pools_the_folds(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_ravdess(tmp_path / "ravdess")  # actors 01, 02, 15, 16, 19, 20; 8 clips each
    out = tmp_path / "cv"
    ser_main(["cv", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
              "--n_folds", "3", "--out", str(out), *FIT])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert [r["fold"] for r in results] == [0, 1, 2]
    tested = [s for r in results for s in r["test_speakers"]]
    assert sorted(tested) == ["01", "02", "15", "16", "19", "20"]  # each speaker tested once
    pooled = json.loads((out / "pooled" / "metrics.json").read_text())
    assert pooled["n_clips"] == 48 == sum(r["n_clips"] for r in results)
    assert pooled["fold_uar"] == [r["uar"] for r in results]
    printed = capsys.readouterr().out
    assert "uar: " in printed and "(over 3 folds)" in printed and "pooled over" in printed
    # per-gender figures of each fold's test report (RAVDESS: odd actors male, even female)
    for r in results:
        fold = json.loads((Path(r["log_dir"]) / "test" / "metrics.json").read_text())
        assert r["gender"] == fold["fairness"]["gender"]
        assert set(r["gender"]["groups"]) == {"female", "male"}  # each fold: one actor of each
        assert sum(g["n_clips"] for g in r["gender"]["groups"].values()) == r["n_clips"]
    gender = pooled["gender"]
    for group in ("female", "male"):
        uars = [r["gender"]["groups"][group]["uar"] for r in results]
        assert gender[group]["uar"]["mean"] == pytest.approx(np.mean(uars))
        assert gender[group]["uar"]["std"] == pytest.approx(np.std(uars, ddof=1))
        assert gender[group]["n_clips"] == 24 and gender[group]["uar"]["n_folds"] == 3
        assert f"gender {group}: UAR {np.mean(uars):.3f} +- {np.std(uars, ddof=1):.3f}" in printed
    gaps = [r["gender"]["uar_gap"] for r in results]
    assert gender["gap"]["uar"]["mean"] == pytest.approx(np.mean(gaps))
    assert f"gender gap: UAR {np.mean(gaps):.3f}" in printed
    assert "UAR per gender" in printed
    # a rerun resumes: nothing left to train, the same pooled report
    ser_main(["cv", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
              "--n_folds", "3", "--out", str(out), *FIT])  # fmt: skip
    assert len(list((out / "fold0").iterdir())) == 1
    # a rerun with other options never mixes their folds into these: refused before any work
    cv = ["cv", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FIT]
    line = error_line(capsys, *cv, "--n_folds", "2", "--out", str(out))
    assert f"--out {out}: {out / 'results.json'} holds runs of other options" in line
    assert '"n_folds": 3' in line and '"n_folds": 2' in line and "--overwrite" in line
    # a report without the results it came from is the user's file: not replaced
    other = tmp_path / "other"
    (other / "pooled").mkdir(parents=True)
    (other / "pooled" / "metrics.json").write_text("{}")
    line = error_line(capsys, *cv, "--n_folds", "3", "--out", str(other))
    assert f"--out {other}: {other / 'pooled' / 'metrics.json'} already exists" in line
    assert not (other / "fold0").exists()
    # --overwrite starts afresh: only the fold run now is in the results and the pooled report
    ser_main([*cv, "--n_folds", "3", "--folds", "1", "--out", str(out), "--overwrite"])
    results = json.loads((out / "results.json").read_text())
    assert [r["fold"] for r in results] == [1] and results[0]["settings"]["n_folds"] == 3
    assert json.loads((out / "pooled" / "metrics.json").read_text())["folds"] == [1]


def test_cv_leave_one_speaker_out_counts_the_speakers(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 3), clips_per_emotion=2)
    out = tmp_path / "loso"
    ser_main(["cv", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
              "--protocol", "loso", "--out", str(out), *FIT])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert [r["test_speakers"] for r in results] == [["01"], ["02"], ["03"]]


def test_cv_needs_a_config(tmp_path: Path):
    with pytest.raises(SERError, match="needs a run config"):
        from ser.cv import main

        main(["--out", str(tmp_path / "x")])
