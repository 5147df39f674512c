import logging
from pathlib import Path

import pytest

from ser.data import EmoDB
from ser.data.emodb import EMOTION_CODES, parse_name
from ser.data.splits import SplitSpec

from .helpers import write_corpus

SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def write_emodb(root: Path) -> Path:
    names = [f"wav/{s}a0{t}{e}a.wav" for s in SPEAKERS for e in EMOTION_CODES for t in (1, 2)]
    return write_corpus(root, names)


def test_parse_name():
    clip = parse_name(Path("wav/03a01Fa.wav"))
    assert (clip.emotion, clip.speaker) == ("happy", "03")
    assert parse_name(Path("16b10Lb.wav")).emotion == "bored"
    assert parse_name(Path("11a05Wc.wav")).emotion == "angry"
    assert parse_name(Path("03a01Xa.wav")) is None


@pytest.mark.parametrize("fold", [0, 9])
def test_leave_one_speaker_out(tmp_path: Path, fold: int):
    dm = EmoDB(root=str(write_emodb(tmp_path / "emodb")), split=SplitSpec("loso", fold=fold))
    assert dm.n_classes == 7 and "bored" in dm.class_names
    dm.setup("fit")
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    assert speakers["test"] == {SPEAKERS[fold]} and len(speakers["train"]) == 9
    assert speakers["val"] <= speakers["train"] and len(dm.datasets["val"]) > 0


def test_verify_names_per_speaker_differences(tmp_path: Path, caplog):
    dm = EmoDB(root=str(write_emodb(tmp_path / "emodb")), split=SplitSpec("loso"))
    with caplog.at_level(logging.INFO, logger="ser"):
        dm.setup("fit")
    assert "class disgust: 20 files, official 46 (26 missing)" in caplog.text
    assert "speaker 16: 14 files, official 71 (57 missing)" in caplog.text
