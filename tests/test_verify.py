import logging
import shutil
from pathlib import Path

from ser.data import RAVDESS
from ser.data.splits import SplitSpec
from ser.data.verify import Official, count_report

SPLIT = {"split": SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"])}


def test_count_report_names_missing_and_extra():
    official = Official(
        clips=4, per_class={"sad": 2, "happy": 2}, speakers=("a", "b"), per_speaker=2
    )
    ok = count_report("X", ["sad", "sad", "happy", "happy"], ["a", "b", "a", "b"], official)
    assert ok.ok and "all counts match" in ok.text
    bad = count_report("X", ["sad", "happy", "angry"], ["a", "a", "c"], official)
    assert not bad.ok
    for line in ("total: 3 files, official 4 (1 missing)", "class sad: 1 files, official 2 (1 missing)",
                 "class angry: 1 files, not in the official corpus (extra)",
                 "speaker b: 0 files, official 2 (2 missing)",
                 "speaker c: 1 files, not in the official corpus (extra)"):  # fmt: skip
        assert line in bad.text


def test_duplicates_are_reported(ravdess_root: Path, caplog):
    original = ravdess_root / "Actor_01" / "03-01-01-01-01-01-01.wav"
    copy = ravdess_root / "Actor_02" / "03-01-01-01-01-01-02.wav"
    shutil.copy(original, copy)
    with caplog.at_level(logging.WARNING, logger="ser"):
        RAVDESS(root=str(ravdess_root), **SPLIT).setup("fit")
    assert f"identical audio in 2 files: {original}, {copy}" in caplog.text
    assert "official 1440" in caplog.text and "speaker 24: 0 files, official 60" in caplog.text


def test_real_ravdess_matches_official_counts(real_ravdess: Path):
    clips = RAVDESS(root=str(real_ravdess)).scan(real_ravdess)
    report = count_report("RAVDESS", [c.emotion for c in clips], [c.speaker for c in clips],
                          RAVDESS.OFFICIAL)  # fmt: skip
    assert report.ok, report.text
