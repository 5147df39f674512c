import logging
from pathlib import Path

import pytest

from ser.data import ManifestCorpus
from ser.data.splits import SplitSpec
from ser.errors import SERError

from .helpers import write_corpus


def write_manifest(root: Path, rows: list[str], header: str = "path,label,speaker") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "list.csv").write_text("\n".join([header, *rows]) + "\n")
    return root / "list.csv"


def test_manifest_labels_speakers_and_missing_file(tmp_path: Path, caplog):
    names = [f"audio/{spk}_{lab}_{i}.wav" for spk in "ABCD" for lab in ("ANG", "happiness")
             for i in range(2)]  # fmt: skip
    write_corpus(tmp_path / "c", names)
    rows = [f"{n},{n.split('_')[1]},{n.split('/')[1][0]}" for n in names]
    rows.append("audio/gone.wav,sad,D")
    manifest = write_manifest(tmp_path / "c", rows)
    dm = ManifestCorpus(
        manifest=str(manifest), split=SplitSpec(n_folds=4, min_clips_per_class=0)
    )  # tiny folds
    assert dm.class_names == ["angry", "happy", "sad"]
    with caplog.at_level(logging.WARNING, logger="ser"):
        dm.setup("fit")
    assert "gone.wav" in caplog.text
    speakers = {s: {c.speaker for c in ds.clips} for s, ds in dm.datasets.items()}
    assert speakers == {"train": {"C", "D"}, "val": {"B"}, "test": {"A"}}


def test_unknown_label_names_row_and_vocabulary(tmp_path: Path):
    write_corpus(tmp_path / "c", ["a.wav", "b.wav"])
    manifest = write_manifest(tmp_path / "c", ["a.wav,angry,1", "b.wav,grumpy,1"])
    with pytest.raises(SERError, match=r"row 3: unknown label 'grumpy'; known labels: neutral"):
        ManifestCorpus(manifest=str(manifest))


def test_split_column_is_the_predefined_split(tmp_path: Path):
    names = [f"{lab}{i}.wav" for lab in ("sad", "calm") for i in range(4)]
    write_corpus(tmp_path / "c", names)
    rows = [f"{n},{n[:-5]},{'test' if n[-5] == '0' else 'train'}" for n in names]
    manifest = write_manifest(tmp_path / "c", rows, header="path,label,split")
    dm = ManifestCorpus(  # a 2-clip test fold: tiny on purpose
        manifest=str(manifest),
        split=SplitSpec("predefined", val_ratio=0.3, min_clips_per_class=0),
    )
    dm.setup("fit")
    assert sorted(c.path.name for c in dm.datasets["test"].clips) == ["calm0.wav", "sad0.wav"]
    bad = write_manifest(tmp_path / "c", ["sad0.wav,sad,holdout"], header="path,label,split")
    with pytest.raises(SERError, match="row 2: split 'holdout'"):
        ManifestCorpus(manifest=str(bad))
