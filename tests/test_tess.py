from pathlib import Path

from ser.data import TESS
from ser.data.splits import SplitSpec
from ser.data.tess import parse_name

from .helpers import write_tess


def test_parse_name():
    assert parse_name(Path("YAF_pleasant_surprised/YAF_bath_ps.wav")).emotion == "surprised"
    clip = parse_name(Path("OAF_Fear/OAF_back_fear.wav"))
    assert (clip.emotion, clip.speaker) == ("fearful", "OAF")
    assert parse_name(Path("OA_bite_neutral.wav")).speaker == "OAF"
    assert parse_name(Path("OAF_back_bored.wav")) is None
    assert parse_name(Path("XYZ_back_angry.wav")) is None


def test_train_on_one_voice_test_on_the_other(tmp_path: Path):
    dm = TESS(
        root=str(write_tess(tmp_path / "tess")),
        split=SplitSpec(test_speakers=["YAF"], val_speakers=[]),
    )
    assert dm.n_classes == 7
    dm.setup("fit")
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    assert speakers == {"train": {"OAF"}, "val": {"OAF"}, "test": {"YAF"}}
    assert len(dm.datasets["test"]) == 28 and len(dm.datasets["val"]) >= 1
    assert sum(len(ds) for ds in dm.datasets.values()) == 57
