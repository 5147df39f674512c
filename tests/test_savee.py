from pathlib import Path

import pytest

from ser.data import SAVEE
from ser.data.savee import EMOTION_CODES, parse_name
from ser.data.splits import SplitSpec

from .helpers import write_corpus

SPEAKERS = ("DC", "JE", "JK", "KL")


def names(flat: bool) -> list[str]:
    return [f"{s}_{e}0{i}.wav" if flat else f"AudioData/{s}/{e}0{i}.wav"
            for s in SPEAKERS for e in EMOTION_CODES for i in (1, 2)]  # fmt: skip


def test_parse_both_layouts():
    clip = parse_name(Path("AudioData/DC/sa01.wav"))
    assert (clip.emotion, clip.speaker) == ("sad", "DC")
    clip = parse_name(Path("KL_su15.wav"))
    assert (clip.emotion, clip.speaker) == ("surprised", "KL")
    assert parse_name(Path("JE/a03.wav")).emotion == "angry"
    assert parse_name(Path("XX/a01.wav")) is None  # not a SAVEE speaker
    assert parse_name(Path("AudioData/DC/info.wav")) is None
    # copies that lower-case the speaker or capitalise the emotion
    assert parse_name(Path("AudioData/dc/sa01.wav")).speaker == "DC"
    assert (parse_name(Path("kl_Su15.wav")).speaker, parse_name(Path("kl_Su15.wav")).emotion) == (
        "KL", "surprised",
    )  # fmt: skip


@pytest.mark.parametrize("flat", [False, True])
def test_leave_one_speaker_out(tmp_path: Path, flat: bool):
    dm = SAVEE(
        root=str(write_corpus(tmp_path / "savee", names(flat))), split=SplitSpec("loso", fold=3)
    )
    dm.setup("fit")
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    # three speakers train (validation is a share of their clips), one is tested
    assert speakers["train"] == {"DC", "JE", "JK"} and speakers["test"] == {"KL"}
    assert speakers["val"] <= speakers["train"] and len(dm.datasets["val"]) > 0
    assert len(dm.datasets["test"]) == 14
