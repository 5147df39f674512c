import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.data import AESDD
from ser.data.aesdd import parse_name
from ser.data.splits import SplitSpec

from .helpers import write_aesdd


def test_parse_name():
    clip = parse_name(Path("anger/a01 (1).wav"))
    assert (clip.emotion, clip.speaker) == ("angry", "1")
    assert parse_name(Path("sadness/s12b (5).wav")).speaker == "5"
    assert parse_name(Path("happiness/h03(2).wav")).emotion == "happy"
    assert parse_name(Path("anger/notes.wav")) is None


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
