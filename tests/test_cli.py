"""End to end through the command line, in-process, on a toy RAVDESS in the real naming."""

import csv
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.cli import main
from ser.spec import SPEC_KEY, SPEC_VERSION

from .helpers import figures_of_predictions, fit, write_ravdess


def test_fit_learns_then_test_writes_report(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=4)
    # Batches of 4 toy clips make the last epochs jitter: the best checkpoint shows what was learnt.
    fit(root, "--trainer.max_epochs", "10", "--data.emotions", "[neutral, happy, sad, angry]",
        "--test_ckpt", "best")  # fmt: skip
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    after_fit = json.loads((run / "test" / "metrics.json").read_text())
    assert after_fit["uar"] >= 0.75  # four tones an octave apart: a toy a working pipeline learns
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert best and (run / "checkpoints" / "last.ckpt").is_file()

    checkpoint = torch.load(best[0], map_location="cpu", weights_only=True)
    spec = checkpoint[SPEC_KEY]
    assert spec["version"] == SPEC_VERSION
    assert spec["class_names"] == ["neutral", "happy", "sad", "angry"]
    frontend = spec["pipeline"]["frontend"]
    assert spec["sample_rate"] == 16000 and frontend["class_path"].endswith(".LogMel")
    assert frontend["init_args"]["hop_ms"] == 16.0 and spec["pipeline"]["denoise"] is None
    assert spec["n_features"] == 64 and spec["corpus"].endswith(".RAVDESS")
    assert spec["net"]["class_path"].endswith(".CNN2D")

    capsys.readouterr()
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(best[0])])
    out = capsys.readouterr().out
    assert "UAR" in out and "confusion_matrix.csv" in out
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_1" / "test"
    with open(report / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == [*spec["class_names"], "support", "recall"]
    counts = [[int(v) for v in row[1:5]] for row in rows[1:]]
    assert sum(map(sum, counts)) == 2 * 4 * 4  # actors 19, 20 x 4 x 4
    assert [int(row[5]) for row in rows[1:]] == [sum(c) for c in counts] == [8, 8, 8, 8]
    assert (report / "confusion_matrix.png").stat().st_size > 1000
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n_clips"] == 32 and metrics["uar"] == pytest.approx(after_fit["uar"])
    assert metrics["uar"] == pytest.approx(
        figures_of_predictions(report / "predictions.csv")["uar"]
    )
    images = EventAccumulator(str(report.parent)).Reload().Tags()["images"]
    assert "test/confusion_matrix" in images  # the confusion-matrix figure went to TensorBoard


def test_bf16_mixed_precision_and_sgd(ravdess_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(
        ravdess_root, "--trainer.max_epochs", "1", "--trainer.precision", "bf16-mixed",
        "--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.01",
        "--model.optimizer.momentum", "0.9", "--model.optimizer.nesterov", "true",
    )  # fmt: skip
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    assert metrics["n_clips"] == 2 * 4 * 2  # actors 19, 20 x 4 tones x 2 clips
    # the test after a bf16-mixed fit ran in float32: a 32-true test gives the same probabilities
    main(["test", "--config", str(run / "config.yaml"), "--trainer.precision", "32-true",
          "--ckpt_path", metrics["ckpt_path"],
          "--trainer.logger.init_args.save_dir", str(tmp_path / "lightning_logs")])  # fmt: skip
    predictions = [
        (r / "test" / "predictions.csv").read_text() for r in (run, run.parent / "version_1")
    ]
    assert predictions[0] == predictions[1]


def test_missing_corpus_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="Actor_01"):
        fit(tmp_path / "no-such-folder", "--trainer.max_epochs", "1")


def test_test_ckpt_picks_the_checkpoint_tested_after_fit(ravdess_root: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for version, which in enumerate(("last", "best")):
        fit(ravdess_root, "--trainer.max_epochs", "2", "--test_ckpt", which)
        run = tmp_path / "lightning_logs" / "cnn2d" / f"version_{version}"
        tested = Path(json.loads((run / "test" / "metrics.json").read_text())["ckpt_path"])
        tested = tested if tested.is_absolute() else tmp_path / tested
        best = next((run / "checkpoints").glob("best-*.ckpt"))
        assert tested == (run / "checkpoints" / "last.ckpt" if which == "last" else best)
