from pathlib import Path

import pytest

from ser.data import FolderCorpus
from ser.data.splits import SplitSpec
from ser.errors import CorpusNotFoundError, SERError

from .helpers import write_corpus

CLASSES = ("Sad", "Angry", "Happy", "Calm")


def test_train_test_folders_are_the_predefined_split(tmp_path: Path):
    """Seed S4's layout: EmotionSpeech/Train|Test/<Emotion>/*.wav, classes alphabetical."""
    names = [f"{stage}/{c}/{c.lower()}_{i}.wav" for stage, n in (("Train", 6), ("Test", 2))
             for c in CLASSES for i in range(n)]  # fmt: skip
    root = str(write_corpus(tmp_path / "EmotionSpeech", names))
    assert FolderCorpus(root=root).split == SplitSpec("predefined")  # split: null, Train/Test found
    dm = FolderCorpus(root=root, split=SplitSpec("predefined", val_ratio=0.25))
    assert dm.class_names == ["angry", "calm", "happy", "sad"] and dm.split.protocol == "predefined"
    dm.setup("fit")
    tests = {c.path.parent.parent.name for c in dm.datasets["test"].clips}
    assert tests == {"Test"} and len(dm.datasets["test"]) == 8
    assert len(dm.datasets["val"]) == 6 and len(dm.datasets["train"]) == 18
    test = dm.datasets["test"]
    labels = {(c.path.parent.name, lab) for c, lab in zip(test.clips, test.labels, strict=True)}
    assert labels == {("Angry", 0), ("Calm", 1), ("Happy", 2), ("Sad", 3)}


def test_flat_folders_split_at_random_and_by_speaker_pattern(tmp_path: Path):
    names = [f"{c}/03-01-x-{spk:02d}.wav" for c in ("anger", "neutral") for spk in range(1, 7)]
    root = write_corpus(tmp_path / "mine", names)
    assert FolderCorpus(root=str(root)).split == SplitSpec("random")  # split: null, flat folders
    dm = FolderCorpus(root=str(root), split=SplitSpec("random", test_ratio=0.5, val_ratio=0.2))
    assert dm.class_names == ["angry", "neutral"] and dm.split.protocol == "random"
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 6
    by_speaker = FolderCorpus(root=str(root), split=SplitSpec("speaker", n_folds=3),
                              speaker_pattern=r"-(\d\d)$")  # fmt: skip
    by_speaker.setup("fit")
    assert {c.speaker for c in by_speaker.datasets["test"].clips} == {"01", "02"}
    with pytest.raises(SERError, match="speaker labels"):
        FolderCorpus(root=str(root), split=SplitSpec("speaker")).setup("fit")


def test_unknown_class_folder_and_missing_root(tmp_path: Path):
    root = write_corpus(tmp_path / "mine", ["angry/a.wav", "contempt/b.wav"])
    with pytest.raises(SERError, match="contempt.*rename it"):
        FolderCorpus(root=str(root))
    with pytest.raises(CorpusNotFoundError, match="Train"):
        FolderCorpus(root=str(tmp_path / "nowhere"))
