import logging
import shutil
from pathlib import Path

from ser.data import RAVDESS, ManifestCorpus
from ser.data.splits import SplitSpec
from ser.data.verify import Official, count_report, speaker_line, speaker_variants

from .helpers import write_corpus

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


def test_speaker_variants_and_the_speaker_line():
    assert speaker_variants(["1", "01", "2", "5", "5b", "OAF", "YAF", "spk_07", "Spk7"]) == [
        ["01", "1"],
        ["5", "5b"],
        ["Spk7", "spk_07"],
    ]
    assert speaker_variants(["DC", "JE", "JK", "KL", "1001", "1010", "03", "13"]) == []
    line = speaker_line(["15", "2", "2", "15", "15", "01"])
    assert line == "  speakers (clips): 01 (1), 2 (2), 15 (3)"


def test_a_speaker_written_two_ways_is_reported_at_setup(tmp_path: Path, caplog):
    names = [f"audio/{spk}_{lab}_{i}.wav" for spk in ("1", "01", "2", "3", "4")
             for lab in ("angry", "sad") for i in range(3)]  # fmt: skip
    write_corpus(tmp_path / "c", names)
    rows = [f"{n},{n.split('_')[1]},{n.split('/')[1].split('_')[0]}" for n in names]
    (tmp_path / "c" / "list.csv").write_text("\n".join(["path,label,speaker", *rows]) + "\n")
    dm = ManifestCorpus(manifest=str(tmp_path / "c" / "list.csv"), split=SplitSpec(n_folds=5))
    with caplog.at_level(logging.WARNING, logger="ser"):
        dm.setup("fit")
    assert "speakers 01, 1 look like one speaker written differently (6, 6 clips)" in caplog.text
