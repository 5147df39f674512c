import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data import AESDD
from ser.data.aesdd import parse_name
from ser.data.splits import SplitSpec
from ser.errors import SERError

from .helpers import AESDD_FOLDERS, write_aesdd, write_corpus


def test_parse_name():
    clip = parse_name(Path("anger/a01 (1).wav"))
    assert (clip.emotion, clip.speaker) == ("angry", "1")
    assert parse_name(Path("sadness/s12b (5).wav")).speaker == "5"
    assert parse_name(Path("happiness/h03(2).wav")).emotion == "happy"
    assert parse_name(Path("anger/notes.wav")) is None


@pytest.mark.parametrize(
    "name", ["d03 (1).wav", "d03 (01).wav", "d03(1).wav", "d03 (1)b.wav", "d03b (1).wav",
             "D03 (1).wav", "d03 ( 1 ).wav"],
)  # fmt: skip
def test_the_variants_of_real_copies_name_one_speaker(name: str):
    clip = parse_name(Path("disgust") / name)
    assert (clip.emotion, clip.speaker) == ("disgust", "1")


def write_real_copy(root: Path) -> Path:
    """An AESDD copy as one came: 5 speakers x 5 emotions x 4 utterances, speaker 1's
    disgust files written ``(01)``, take suffixes ``(5)b``; 100 files."""
    names = []
    for code, folder in AESDD_FOLDERS.items():
        for spk in range(1, 6):
            for u in range(1, 5):
                bracket = f"({spk:02d})" if (spk, code) == (1, "d") else f"({spk})"
                take = "b" if (spk, u) == (5, 4) else ""
                names.append(f"{folder}/{code}{u:02d} {bracket}{take}.wav")
    return write_corpus(root, names)


def test_a_real_copy_gives_five_speakers_and_whole_speaker_folds(tmp_path: Path, caplog):
    root = write_real_copy(tmp_path / "aesdd")
    dm = AESDD(root=str(root), split=SplitSpec("loso", fold=0))
    with caplog.at_level(logging.INFO, logger="ser"):
        dm.setup("fit")
    assert "speakers (clips): 1 (20), 2 (20), 3 (20), 4 (20), 5 (20)" in caplog.text
    assert "look like one speaker" not in caplog.text
    test = dm.datasets["test"]
    assert {c.speaker for c in test.clips} == {"1"} and len(test) == 20  # (01) included
    assert len({test.labels[i] for i in range(len(test))}) == 5
    train_speakers = {c.speaker for c in dm.datasets["train"].clips}
    assert train_speakers == {"2", "3", "4", "5"}


def test_a_test_fold_too_small_to_mean_anything_is_refused(tmp_path: Path):
    # the copy: the test "speaker" held 5 clips of 2 classes
    names = [f"{folder}/{code}0{u} ({spk}).wav" for code, folder in AESDD_FOLDERS.items()
             for spk in ("1", "2", "3") for u in (1, 2, 3)]  # fmt: skip
    names += ["disgust/d01 (9).wav", "disgust/d02 (9).wav", "disgust/d03 (9).wav",
              "fear/f01 (9).wav", "fear/f02 (9).wav"]  # fmt: skip
    root = write_corpus(tmp_path / "aesdd", names)
    dm = AESDD(root=str(root), split=SplitSpec(test_speakers=["9"], val_speakers=["3"]))
    with pytest.raises(SERError) as err:
        dm.setup("fit")
    message = str(err.value)
    classes = "(fearful 2, disgust 3; absent: happy, sad, angry)"  # the class order of AESDD
    assert f"the test fold holds 5 clips of 2 classes {classes}" in message
    assert "from speakers 9" in message and "fewer than 10 clips" in message
    assert "--data.split.min_clips_per_class" in message
    allowed = AESDD(root=str(root), split=SplitSpec(test_speakers=["9"], val_speakers=["3"],
                                                    min_clips_per_class=0))  # fmt: skip
    allowed.setup("fit")
    assert len(allowed.datasets["test"]) == 5


def test_empty_file_is_skipped_with_a_warning_naming_it(tmp_path: Path, caplog):
    root = write_aesdd(tmp_path / "aesdd")
    empty = root / "fear" / "f03 (2).wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)  # seed S0's 0.0 s file
    silent = root / "fear" / "f04 (2).wav"
    sf.write(silent, np.zeros(4000, dtype=np.float32), 16000)
    dm = AESDD(root=str(root), split=SplitSpec("loso", fold=0))
    with caplog.at_level(logging.WARNING, logger="ser"):
        dm.setup("fit")
    assert str(empty) in caplog.text and "no samples" in caplog.text
    assert str(silent) in caplog.text and "silent" in caplog.text
    assert sum(len(ds) for ds in dm.datasets.values()) == 50
    assert {c.speaker for c in dm.datasets["test"].clips} == {"1"}
