"""``ser export --format hub``: a model folder (safetensors, config.json, model card) that
``ser predict`` loads without pickle or Lightning and that answers as the checkpoint does."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ser.__main__ import main as ser_main
from ser.errors import SERError
from ser.inference import load_model
from ser.inference.export import export
from ser.report import write_report
from ser.spec import SPEC_KEY

from .helpers import CLASSES, RATE, REPO, noise, tree_env, write_checkpoint


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run folder as ``ser fit`` + ``ser test`` leave it: checkpoint of a RAVDESS model with an
    extra spec key, config.yaml with the split, test report with predictions."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    checkpoint = write_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", seed=3)
    saved = torch.load(checkpoint, weights_only=True)
    saved[SPEC_KEY] |= {"corpus": "ser.data.ravdess.RAVDESS", "temperature": 1.5}
    torch.save(saved, checkpoint)
    split = {"protocol": "speaker", "test_speakers": ["19", "20"], "val_speakers": ["15"]}
    config = {"data": {"class_path": "ser.data.RAVDESS", "init_args": {"split": split}}}
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    confusion = np.array([[3, 1, 0, 0], [0, 4, 0, 0], [1, 0, 2, 1], [0, 0, 0, 4]])
    predictions = [
        {"path": f"{i}.wav", "speaker": "19" if i % 2 else "20", "label": i % 4,
         "probabilities": [0.25] * 4}
        for i in range(8)
    ]  # fmt: skip
    write_report(confusion, CLASSES, tmp_path / "run" / "test", predictions=predictions,
                 extra={"ckpt_path": str(checkpoint), "score": "crops"})  # fmt: skip
    return checkpoint


def test_folder_answers_as_the_checkpoint(tmp_path: Path, run: Path):
    audio = tmp_path / "clip.wav"
    sf.write(audio, noise(7.3, rate=44100, channels=2), 44100)
    ser_main(["export", str(run), "--output", str(tmp_path / "folder"), "--format", "hub"])
    folder = tmp_path / "folder"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    # the spec as the checkpoint holds it: a key this code does not know travels too
    assert (
        json.loads((folder / "config.json").read_text())
        == torch.load(run, weights_only=True)[SPEC_KEY]
    )
    for model, out in ((run, "ckpt.csv"), (folder, "folder.csv")):
        ser_main(["predict", str(model), str(audio), "--per-window", "--output", str(tmp_path / out)])  # fmt: skip
    from_checkpoint, from_folder = (
        read_rows(tmp_path / "ckpt.csv"),
        read_rows(tmp_path / "folder.csv"),
    )
    assert len(from_folder) == len(from_checkpoint) == 1 + 3  # the whole and 3 windows
    assert len({r["emotion"] for r in from_folder[1:]} | {r["angry"] for r in from_folder[1:]}) > 2
    assert from_folder == from_checkpoint


def test_model_card_states_data_licence_split_and_results(tmp_path: Path, run: Path):
    export(run, tmp_path / "folder", ["hub"])
    card = (tmp_path / "folder" / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0\n")
    for text in (
        "classes (4, in output order): neutral, happy, sad, angry", f"{RATE} Hz",
        "`ser.transforms.LogMel` (n_mels=32)", "`ser.data.ravdess.RAVDESS`", "CC BY-NC-SA 4.0",
        "not for commercial use", "protocol=speaker", "held-out test speakers: 19, 20",
        "- temperature: 1.5", "UAR (unweighted average recall) **0.812**",
        "| sad | 0.500 | 1.000 | 0.667 | 4 |", "| sad | 1 | 0 | 2 | 1 |",
        "acted North-American English speech", "ser predict folder clip.wav",
        "upload_folder(repo_id='USER/folder', folder_path='folder')",
    ):  # fmt: skip
        assert text in card, text


def test_model_card_says_when_there_is_no_test_report(tmp_path: Path):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    export(checkpoint, tmp_path / "folder", ["hub"])
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "No test report" in card and "licence of the training data is not recorded" in card


def test_replaces_no_file_without_overwrite(tmp_path: Path, run: Path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    export(run, folder, ["hub"])  # a file of the user's own stays beside the model folder
    (folder / "README.md").write_text("my edited card")
    with pytest.raises(SERError, match="model.safetensors already exists.*--overwrite"):
        export(run, folder, ["hub"])
    assert (folder / "README.md").read_text() == "my edited card"
    export(run, folder, ["hub"], overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "model.safetensors").is_file()
    assert (folder / "README.md").read_text() != "my edited card"


NO_PICKLE_NO_LIGHTNING = """
import importlib.abc, pickle, sys, torch

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "pytorch_lightning"):
            raise ImportError("lightning is blocked")

def refuse(*args, **kwargs):
    raise RuntimeError("unpickling is blocked")

sys.meta_path.insert(0, Refuse())
pickle.load = pickle.loads = pickle.Unpickler = torch.load = refuse
from ser.__main__ import main
main(["predict", *sys.argv[1:]])
"""


def test_folder_loads_without_pickle_or_lightning(tmp_path: Path):
    export(write_checkpoint(tmp_path / "tiny.ckpt"), tmp_path / "folder", ["hub"])
    sf.write(tmp_path / "clip.wav", noise(2.0), RATE)
    result = subprocess.run(
        [sys.executable, "-c", NO_PICKLE_NO_LIGHTNING, str(tmp_path / "folder"), str(tmp_path / "clip.wav")],
        capture_output=True, text=True, cwd=REPO, env=tree_env(), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "clip.wav" in result.stdout and any(c in result.stdout for c in CLASSES)
    checkpoint = subprocess.run(  # the guard is real: a checkpoint needs torch.load
        [sys.executable, "-c", NO_PICKLE_NO_LIGHTNING, str(tmp_path / "tiny.ckpt"), str(tmp_path / "clip.wav")],
        capture_output=True, text=True, cwd=REPO, env=tree_env(), timeout=300,
    )  # fmt: skip
    assert checkpoint.returncode != 0 and "blocked" in checkpoint.stdout + checkpoint.stderr


def test_damaged_folder_is_one_clear_error(tmp_path: Path):
    folder = tmp_path / "folder"
    export(write_checkpoint(tmp_path / "tiny.ckpt"), folder, ["hub"])
    with pytest.raises(
        SERError, match="already an export; `ser export` takes a training checkpoint"
    ):
        export(folder, tmp_path / "again", ["hub"])
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SERError, match="model.safetensors: not a readable safetensors file"):
        load_model(folder)
    (folder / "config.json").unlink()
    with pytest.raises(SERError, match="a folder without config.json"):
        load_model(folder)
