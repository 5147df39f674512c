import logging
from pathlib import Path

import pytest

from ser.data import RAVDESS
from ser.data.ravdess import parse_name
from ser.data.splits import SplitSpec
from ser.errors import CorpusNotFoundError


def test_parse_name():
    clip = parse_name(Path("Actor_12/03-01-05-02-01-01-12.wav"))
    assert clip.emotion == "angry" and clip.speaker == "12"
    assert parse_name(Path("03-02-05-02-01-01-12.wav")) is None  # song
    assert parse_name(Path("notes.wav")) is None


def test_setup_splits_by_actor(ravdess_root: Path):
    dm = RAVDESS(
        root=str(ravdess_root),
        split=SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"]),
    )
    assert dm.n_classes == 8 and dm.n_features == 64 and dm.sample_rate == 16000
    dm.setup("fit")
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    assert speakers == {"train": {"01", "02"}, "val": {"15", "16"}, "test": {"19", "20"}}
    assert sum(len(ds) for ds in dm.datasets.values()) == 6 * 4 * 2


def test_emotion_subset_in_given_order(ravdess_root: Path):
    dm = RAVDESS(
        root=str(ravdess_root), emotions=["sad", "neutral"], split=SplitSpec(fold=0, n_folds=3)
    )
    assert dm.class_names == ["sad", "neutral"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["label"].tolist()) <= {0, 1}


def test_batch_contract_and_crops(ravdess_root: Path):
    dm = RAVDESS(
        root=str(ravdess_root), max_seconds=0.25, batch_size=4, split=SplitSpec(fold=0, n_folds=3)
    )
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["waveform"].shape == (4, 4000) and batch["lengths"].tolist() == [4000] * 4
    assert len(batch["speaker"]) == len(batch["path"]) == 4
    again = next(iter(dm.val_dataloader()))
    assert (again["waveform"] == batch["waveform"]).all()  # evaluation crops are deterministic
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["features"].shape[:2] == (4, 64) and batch["feature_lengths"].shape == (4,)


def test_missing_root_says_where_to_get_it(tmp_path: Path):
    dm = RAVDESS(root=str(tmp_path / "nowhere"))
    with pytest.raises(CorpusNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "zenodo" in message and "Actor_01" in message


def test_bad_files_are_skipped_with_a_warning(ravdess_root: Path, caplog):
    corrupt = ravdess_root / "Actor_01" / "03-01-01-02-01-01-01.wav"
    corrupt.write_text("not audio")
    empty = ravdess_root / "Actor_01" / "03-01-03-02-01-01-01.wav"
    empty.write_bytes(b"")
    dm = RAVDESS(
        root=str(ravdess_root),
        split=SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"]),
    )
    with caplog.at_level(logging.WARNING, logger="ser"):
        dm.setup("fit")
    assert str(corrupt) in caplog.text and str(empty) in caplog.text
    assert sum(len(ds) for ds in dm.datasets.values()) == 48


def test_real_ravdess_counts(real_ravdess: Path):
    dm = RAVDESS(root=str(real_ravdess))
    clips = dm.clips()
    assert len(clips) == 1440 and len({c.speaker for c in clips}) == 24
    per_class = {e: sum(c.emotion == e for c in clips) for e in dm.class_names}
    assert per_class["neutral"] == 96 and all(per_class[e] == 192 for e in dm.class_names[1:])
