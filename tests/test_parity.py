"""Train/serve parity: ``ser test`` writes per-clip predictions, and ``ser test --score recordings``
scores every test recording exactly as ``ser predict`` does, also with a device noise gate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from ser.__main__ import main as ser_main
from ser.cli import main
from ser.spec import SPEC_KEY

from .helpers import fit, write_ravdess

CLASSES = ["neutral", "happy", "sad", "angry"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run trained with the noise gate on the device; its folder."""
    tmp = tmp_path_factory.mktemp("parity")
    # clips longer than the crop, so that recordings are windowed differently from crops
    root = write_ravdess(tmp / "ravdess", clips_per_emotion=2, seconds=1.3)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("SER_CACHE_DIR", str(tmp / "cache"))
        fit(root, "--trainer.max_epochs", "2", "--data.emotions", f"[{', '.join(CLASSES)}]",
            "--data.denoise.mode", "stationary", "--data.denoise.where", "device")  # fmt: skip
    return tmp / "lightning_logs" / "cnn2d" / "version_0"


def test_test_writes_one_prediction_row_per_clip(trained: Path):
    rows = read_csv(trained / "test" / "predictions.csv")
    metrics = json.loads((trained / "test" / "metrics.json").read_text())
    assert list(rows[0]) == ["path", "speaker", "label", "predicted", *CLASSES]
    assert len(rows) == metrics["n_clips"] == 2 * 4 * 2  # actors 19, 20 x 4 emotions x 2
    assert {r["speaker"] for r in rows} == {"19", "20"}
    for row in rows:
        probabilities = [float(row[c]) for c in CLASSES]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted"] == CLASSES[probabilities.index(max(probabilities))]
    correct = sum(r["label"] == r["predicted"] for r in rows)
    assert correct / len(rows) == pytest.approx(metrics["accuracy"])


def test_recordings_score_as_predict_scores_them(trained: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = trained / "checkpoints" / "last.ckpt"
    spec = torch.load(checkpoint, weights_only=True)[SPEC_KEY]
    assert spec["pipeline"]["denoise"]["where"] == "device"
    main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint),
          "--score", "recordings", "--window", "1.0", "--hop", "0.5"])  # fmt: skip
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "test"
    tested = {r["path"]: r for r in read_csv(report / "predictions.csv")}
    assert json.loads((report / "metrics.json").read_text())["score"] == "recordings"
    ser_main(["predict", str(checkpoint), *tested, "--window", "1.0", "--hop", "0.5",
              "--output", str(tmp_path / "p.csv")])  # fmt: skip
    predicted = {r["file"]: r for r in read_csv(tmp_path / "p.csv") if r["window"] == "all"}
    assert predicted.keys() == tested.keys() and len(tested) == 16
    for path, row in tested.items():
        assert row["predicted"] == predicted[path]["emotion"], path
        for c in CLASSES:
            assert float(row[c]) == pytest.approx(float(predicted[path][c]), abs=1e-4), path
    # the crops of the fit's test are another scoring: the same files, not the same figures
    crops = {r["path"]: r for r in read_csv(trained / "test" / "predictions.csv")}
    assert crops.keys() == tested.keys()
    assert any(
        abs(float(crops[p][c]) - float(tested[p][c])) > 1e-3 for p in tested for c in CLASSES
    )


def test_test_uses_the_checkpoint_pipeline_whatever_the_config_says(trained: Path, tmp_path: Path,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    checkpoint = str(trained / "checkpoints" / "last.ckpt")
    # a config asking for other features and no noise gate: the checkpoint's pipeline wins
    main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", checkpoint,
          "--data.frontend", "ser.transforms.MFCC", "--data.frontend.n_mfcc", "13",
          "--data.denoise", "null"])  # fmt: skip
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "test" / "predictions.csv"
    again = {r["path"]: r for r in read_csv(report)}
    crops = {r["path"]: r for r in read_csv(trained / "test" / "predictions.csv")}
    assert again.keys() == crops.keys()
    for path, row in again.items():
        for c in CLASSES:
            assert float(row[c]) == pytest.approx(float(crops[path][c]), abs=1e-5), path
