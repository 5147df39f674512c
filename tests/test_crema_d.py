import logging
from pathlib import Path

from ser.data import CREMAD
from ser.data.crema_d import parse_name
from ser.data.splits import SplitSpec

from .helpers import write_crema


def test_parse_name():
    clip = parse_name(Path("AudioWAV/1001_DFA_ANG_XX.wav"))
    assert (clip.emotion, clip.speaker) == ("angry", "1001")
    assert parse_name(Path("1091_IEO_SAD_HI.flac")).emotion == "sad"
    assert parse_name(Path("1001_DFA_XYZ_XX.wav")) is None
    assert parse_name(Path("readme.wav")) is None


def test_speaker_folds_hold_out_actors(tmp_path: Path):
    dm = CREMAD(root=str(write_crema(tmp_path / "crema")), split=SplitSpec(fold=2, n_folds=6))
    assert dm.class_names == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    dm.setup("fit")
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    assert speakers["test"] == {"1005", "1006"} and speakers["val"] == {"1007", "1008"}
    assert not speakers["train"] & (speakers["test"] | speakers["val"])
    assert sum(len(ds) for ds in dm.datasets.values()) == 12 * 6 * 2


def test_seed_s1_random_split_sizes(tmp_path: Path):
    """70/30 then 95/5 stratified, as seed S1 did (7442 clips gave 4948 / 261 / 2233)."""
    dm = CREMAD(
        root=str(write_crema(tmp_path / "crema", range(1001, 1021))), split=SplitSpec("random")
    )
    dm.setup("fit")
    n = 20 * 12
    assert (
        len(dm.datasets["test"]) == 72 and len(dm.datasets["val"]) == 9
    )  # ceil(.3n), ceil(.05*168)
    assert sum(len(ds) for ds in dm.datasets.values()) == n


def test_verify_reports_missing_files(tmp_path: Path, caplog):
    dm = CREMAD(root=str(write_crema(tmp_path / "crema", range(1001, 1005))),
                split=SplitSpec(n_folds=2, val_speakers=[]))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ser"):
        dm.setup("fit")
    assert "48 files" in caplog.text and "official 7442" in caplog.text
    assert "class neutral: 8 files, official 1087 (1079 missing)" in caplog.text
    assert "speaker 1091: no files (missing)" in caplog.text
