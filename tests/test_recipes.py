"""Every seed recipe (configs/recipes/) runs end to end for one batch on a tiny corpus generated in
the recipe's own corpus layout and naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser.baseline import main as baseline_main
from ser.cli import main

from .helpers import REPO, write_aesdd, write_corpus, write_crema, write_ravdess, write_tess

RECIPES = REPO / "configs" / "recipes"


def write_emotion_speech(root: Path) -> Path:
    """Seed S4's folder-per-class set: Train|Test/<Emotion>/*.wav, four classes."""
    names = [f"{stage}/{c}/{c.lower()}_{i:02d}.wav" for stage, n in (("Train", 8), ("Test", 3))
             for c in ("Angry", "Calm", "Happy", "Sad") for i in range(n)]  # fmt: skip
    return write_corpus(root, names, {"Angry": 200.0, "Calm": 300.0, "Happy": 450.0, "Sad": 650.0})


#: recipe -> (corpus writer, classes the corpus gives)
CORPORA = {
    "s0_aesdd_cnn2d": (write_aesdd, 5),
    "s1_crema_d_cnn_lstm": (write_crema, 6),
    "s1_crema_d_cnn2d": (write_crema, 6),
    "s2_ravdess_vae": (lambda root: write_ravdess(root, actors=(1, *range(15, 25))), 8),
    "s3_tess_cnn_lstm": (write_tess, 7),
    "s3_tess_lstm": (write_tess, 7),
    "s4_folder_m5": (write_emotion_speech, 4),
    "s4_folder_cnn2d": (write_emotion_speech, 4),
}


def test_every_recipe_is_tested():
    assert {p.stem for p in RECIPES.glob("*.yaml")} == {*CORPORA, "s4_folder_svm"}


@pytest.mark.parametrize("recipe", sorted(CORPORA))
def test_recipe_runs_one_batch(recipe: str, tmp_path: Path, monkeypatch):
    write, n_classes = CORPORA[recipe]
    root = write(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    cli = main([
        "fit", "--config", str(RECIPES / f"{recipe}.yaml"), "--data.root", str(root),
        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
        # a toy corpus: its test fold is too small for a figure, and none is computed here
        "--data.split.min_clips_per_class", "0",
    ])  # fmt: skip
    assert cli.trainer.global_step == 1
    assert cli.model.n_classes == cli.datamodule.n_classes == n_classes


def test_s4_svm_recipe_writes_a_report_per_feature_type(tmp_path: Path, capsys):
    root = write_emotion_speech(tmp_path / "EmotionSpeech")
    out = tmp_path / "svm"
    baseline_main(["--config", str(RECIPES / "s4_folder_svm.yaml"), "--data.root", str(root),
                   "--out_dir", str(out)])  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    # S4's sub-band features, MFCC and the default hand-crafted stack, named by class and set
    names = ["handcrafted-band_centroid-band_bandwidth-band_energy", "mfcc", "handcrafted"]
    assert [r["name"] for r in summary["results"]] == names
    assert summary["svm"]["C"] == 10.0 and summary["best"] in names
    for name in names:
        assert (out / name / "confusion_matrix.csv").is_file()
