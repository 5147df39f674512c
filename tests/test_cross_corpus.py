"""Train on a toy RAVDESS, test on a toy SAVEE: compared on the classes both have."""

import json
from pathlib import Path

import pytest
import torch

from ser.cli import main
from ser.data import SAVEE
from ser.data.splits import SplitSpec
from ser.errors import SERError

from .helpers import REPO, TONES, fit, write_corpus, write_ravdess

SAVEE_YAML = str(REPO / "configs" / "data" / "savee.yaml")
# SAVEE codes of RAVDESS's toy emotions (same tones), and three the model does not know.
SHARED = {"n": TONES["01"], "h": TONES["03"], "sa": TONES["04"], "a": TONES["05"]}


def write_savee(root: Path) -> Path:
    names = [f"AudioData/{s}/{e}{i:02d}.wav" for s in ("DC", "KL") for e in (*SHARED, "d", "f", "su")
             for i in range(1, 4)]  # fmt: skip
    return write_corpus(root, names, {f"/{e}0": f for e, f in SHARED.items()})


def test_ravdess_model_tested_on_savee_shared_classes(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit(write_ravdess(tmp_path / "ravdess", clips_per_emotion=4), "--trainer.max_epochs", "10",
        "--data.emotions", "[neutral, happy, sad, angry]",
        "--test_after_fit", "false")  # fmt: skip
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    ckpt = sorted((run / "checkpoints").glob("best-*.ckpt"))[0]
    capsys.readouterr()
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
          "--data", SAVEE_YAML, "--data.root", str(write_savee(tmp_path / "savee"))])  # fmt: skip
    out = capsys.readouterr().out
    assert "compared on the classes the model and the data share" not in out  # all 4 shared
    metrics = json.loads((run.parent / "version_1" / "test" / "metrics.json").read_text())
    assert metrics["data"] == "SAVEE" and metrics["class_names"] == [
        "neutral",
        "happy",
        "sad",
        "angry",
    ]
    assert metrics["compared_classes"] == ["neutral", "happy", "sad", "angry"]
    assert (
        metrics["n_clips"] == 2 * 4 * 3
    )  # every shared-class clip of both speakers; d/f/su dropped
    assert metrics["uar"] >= 0.75  # the same tones: what the model learnt carries over


def test_partly_shared_classes_and_none_shared(tmp_path: Path):
    root = str(write_savee(tmp_path / "savee"))
    dm = SAVEE(
        root=root, split=SplitSpec("all"), target_classes=["neutral", "calm", "happy", "bored"]
    )
    assert dm.class_names == ["neutral", "calm", "happy", "bored"]
    assert dm.compared_classes == ["neutral", "happy"]
    dm.setup("test")
    labels = torch.tensor(dm.datasets["test"].labels)
    assert sorted(labels.unique().tolist()) == [0, 2] and len(labels) == 2 * 2 * 3
    with pytest.raises(SERError, match="no class in common"):
        SAVEE(root=root, target_classes=["calm", "bored"])
