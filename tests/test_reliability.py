"""Faults that used to pass silently or lose a user's work: diverged weights, an earlier export,
file permissions, a NaN window."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from ser.__main__ import main as ser_main
from ser.errors import SERError
from ser.inference import load_model, predict_files
from ser.inference.export import export
from ser.io import write_text

from .helpers import RAVDESS_YAML, REPO, write_checkpoint


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path: Path):
    path = write_checkpoint(tmp_path / "diverged.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.endswith("head.4.weight"))
    checkpoint["state_dict"][key][0, 0] = float("nan")
    torch.save(checkpoint, path)
    with pytest.raises(
        SERError, match=r"diverged.ckpt: 1 weight tensors hold NaN .* \(e.g. head.4.weight\)"
    ):
        load_model(path)


def test_export_without_onnx_keeps_an_earlier_onnx_file(tmp_path: Path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec  # an install without the ONNX extra
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else find_spec(n, *a)
    )
    out = tmp_path / "exported"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier export")
    export(write_checkpoint(tmp_path / "m.ckpt"), out)
    assert (out / "model.onnx").read_bytes() == b"an earlier export"
    assert "skipping ONNX" in capsys.readouterr().err and (out / "model.ts").is_file()


def test_written_files_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, as open() would make it


def test_a_nan_window_is_a_clear_error(tmp_path: Path):
    model = load_model(write_checkpoint(tmp_path / "m.ckpt"))
    with pytest.raises(SERError, match=r"window \(nan\)"):
        predict_files(model, [tmp_path / "a.wav"], window_seconds=float("nan"))


def test_uar_is_one_figure_whether_logged_or_reported():
    """A cross-corpus test: the data lacks class 3, which the model still predicts. The logged
    test/uar and the report's UAR (from the confusion matrix) must be the same figure."""
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassRecall

    from ser.confusion import metrics_from_confusion
    from ser.tasks.metrics import UnweightedAverageRecall

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 4, generator=generator)
    labels = torch.randint(3, (64,), generator=generator)  # classes 0-2 only
    assert (logits.argmax(1) == 3).any()
    uar, confusion, macro = (
        UnweightedAverageRecall(4),
        MulticlassConfusionMatrix(4),
        MulticlassRecall(4),
    )
    for metric in (uar, confusion, macro):
        metric.update(logits, labels)
    report = metrics_from_confusion(confusion.compute().numpy(), ["a", "b", "c", "d"])
    assert float(uar.compute()) == pytest.approx(report["uar"])
    assert float(macro.compute()) < report["uar"]  # what Lightning's table showed before


def test_a_fit_failing_before_training_leaves_no_run_folder(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs" / "cnn2d" / "version_0").mkdir(parents=True)  # an earlier run
    (tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(SystemExit) as exit_:
        ser_main(["fit", "--config", str(REPO / "configs" / "cnn2d.yaml"), "--data",
                  RAVDESS_YAML, "--data.root", str(tmp_path / "nowhere")])  # fmt: skip
    assert exit_.value.code == 2 and "corpus not found" in capsys.readouterr().err
    runs = sorted(p.name for p in (tmp_path / "lightning_logs" / "cnn2d").iterdir())
    assert runs == ["version_0"]  # the failed run's version_1 is gone, the earlier run kept
