"""The real corpora beside the repository (skipped where they are absent): read as they are, a
few epochs on each beating chance on its training speakers, and a model of one corpus tested on
every clip of the other."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ser.cli import main
from ser.data import EmoDB
from ser.data.splits import SplitSpec

from .helpers import CLASSES, RAVDESS_YAML, REPO

EMODB_YAML = str(REPO / "configs" / "data" / "emodb.yaml")


def test_emodb_copy_reads_as_it_is_with_its_official_counts(real_emodb: Path):
    """The 2-s copy at 22.05 kHz: every file decoded at 16 kHz, the official 535 clips of 10
    speakers and 7 emotions, the speaker and emotion from each name."""
    data = EmoDB(root=str(real_emodb), split=SplitSpec("all"))
    data.setup("test")
    test = data.datasets["test"]
    assert len(test) == 535
    assert sorted({c.speaker for c in test.clips}) == [
        "03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]  # fmt: skip
    assert Counter(c.emotion for c in test.clips) == EmoDB.OFFICIAL.per_class
    assert {round(len(w) / 16000, 2) for w in test.waves} == {2.0}  # cut or padded to 2 s


def tiny_fit_scores_its_training_speakers(
    tmp_path: Path, monkeypatch, data_yaml: str, root: Path, train_speakers: list[str], *extra: str
) -> tuple[dict, Path]:
    """A few epochs of a small head on MFCC statistics, normalised per speaker, on the corpus as
    it is; then ``ser test`` on the speakers it was trained on: their ``metrics.json``, and the
    run's folder."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs" / "voice.yaml"), "--data", data_yaml,
          "--data.root", str(root), *extra, "--data.max_seconds", "1.5",
          "--data.frontend", "ser.transforms.MFCC", "--model.net.init_args.pooling", "mean_std",
          "--model.net.init_args.dropout", "0.0", "--trainer.max_epochs", "15",
          "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])  # fmt: skip
    run = tmp_path / "lightning_logs" / "voice" / "version_0"
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path",
          str(run / "checkpoints" / "last.ckpt"), "--data.split",
          json.dumps({"protocol": "speaker", "test_speakers": train_speakers, "val_speakers": []}),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    return json.loads((run.parent / "version_1" / "test" / "metrics.json").read_text()), run


def test_a_tiny_fit_on_real_ravdess_beats_chance_and_tests_on_real_emodb(
    real_ravdess: Path, real_emodb: Path, tmp_path: Path, monkeypatch
):
    """A few epochs on RAVDESS's four classes (actors 1-14 train) score its training actors well
    above chance: a wrong label read from the file names would leave them near 0.25. The model
    then tests on EmoDB (another corpus, another language): every clip of the four classes the
    two share (79 neutral, 71 happy, 62 sad, 127 angry), once."""
    train = [f"{a:02d}" for a in range(1, 15)]
    metrics, run = tiny_fit_scores_its_training_speakers(
        tmp_path, monkeypatch, RAVDESS_YAML, real_ravdess, train,
        "--data.emotions", f"[{', '.join(CLASSES)}]")  # fmt: skip
    assert metrics["n_clips"] == 14 * (4 + 8 + 8 + 8)
    assert metrics["uar"] > 0.25 + 0.2, metrics["uar"]
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path",
          str(run / "checkpoints" / "last.ckpt"), "--data", EMODB_YAML,
          "--data.root", str(real_emodb), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    report = run.parent / "version_2" / "test" / "metrics.json"
    metrics = json.loads(report.read_text())
    assert metrics["class_names"] == CLASSES and metrics["n_clips"] == 79 + 71 + 62 + 127
    rows = (report.parent / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 339 and len({r.split(",")[0] for r in rows}) == 339


def test_a_tiny_fit_on_real_emodb_beats_chance_on_its_training_clips(
    real_emodb: Path, tmp_path: Path, monkeypatch
):
    """The same on EmoDB's seven classes (speaker 03 tested, 08 validates, the other eight
    train): its training speakers score well above chance (1/7)."""
    train = ["09", "10", "11", "12", "13", "14", "15", "16"]
    split = {"protocol": "speaker", "test_speakers": ["03"], "val_speakers": ["08"]}
    metrics, _ = tiny_fit_scores_its_training_speakers(
        tmp_path, monkeypatch, EMODB_YAML, real_emodb, train, "--data.split", json.dumps(split)
    )
    assert metrics["n_clips"] == 535 - 49 - 58
    assert len(metrics["class_names"]) == 7
    assert metrics["uar"] > 1 / 7 + 0.15, metrics["uar"]
