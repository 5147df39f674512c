"""Recordings without labels (--data.unlabeled): read, skipped by name when unreadable, added to
the training clips without a label, learnt from by distillation only."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from ser.data import RAVDESS
from ser.data.dataset import UNLABELED
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.models import CNN2D
from ser.tasks.classification import EmotionClassifier, balanced_class_weights

from .helpers import CLASSES, REPO, error_line, fit, noise, write_checkpoint, write_ravdess

SPLIT = SplitSpec(test_speakers=["19"], val_speakers=["15"])
DISTILL = str(REPO / "configs" / "distill.yaml")


def write_unlabeled(folder: Path) -> Path:
    """Two speakers' folders of recordings, a loose one, an unreadable file and a silent one."""
    for speaker, seeds in (("anna", (1, 2)), ("ben", (3,))):
        (folder / speaker).mkdir(parents=True)
        for seed in seeds:
            sf.write(folder / speaker / f"take{seed}.wav", noise(0.6, seed=seed), 16000)
    sf.write(folder / "loose.flac", noise(0.5, seed=4), 16000)
    (folder / "anna" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    sf.write(folder / "ben" / "silent.wav", torch.zeros(8000).numpy(), 16000)
    return folder


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    return write_ravdess(tmp_path / "ravdess", actors=(1, 2, 15, 19)), write_unlabeled(
        tmp_path / "mine"
    )


def test_unlabeled_recordings_join_training_without_labels(corpus, caplog):
    root, mine = corpus
    data = RAVDESS(root=str(root), split=SPLIT, verify=False, emotions=CLASSES,
                   unlabeled=str(mine), normalization="speaker")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ser"):
        data.setup("fit")
    train = data.datasets["train"]
    added = [(c.path.name, c.speaker, c.corpus, label)
             for c, label in zip(train.clips, train.labels, strict=True) if label == UNLABELED]  # fmt: skip
    assert sorted(added) == [
        ("loose.flac", "unlabeled", "unlabeled", UNLABELED),
        ("take1.wav", "unlabeled/anna", "unlabeled", UNLABELED),
        ("take2.wav", "unlabeled/anna", "unlabeled", UNLABELED),
        ("take3.wav", "unlabeled/ben", "unlabeled", UNLABELED),
    ]
    assert all(label >= 0 for label in data.datasets["val"].labels + data.datasets["test"].labels)
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "broken.wav" in skipped and "silent.wav" in skipped
    # each folder is a speaker of the normalisation
    assert {"unlabeled/anna", "unlabeled/ben"} <= set(data.pipeline.normalization.stats)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"unlabeled": "/nonexistent/mine"}, "--data.unlabeled /nonexistent/mine: no such folder"),
     ({"balance_classes": True}, "cannot be drawn by class"),],
)  # fmt: skip
def test_bad_unlabeled_settings_are_one_line(corpus, kwargs: dict, message: str):
    root, mine = corpus
    with pytest.raises(SERError, match=message):
        RAVDESS(root=str(root), split=SPLIT, **{"unlabeled": str(mine), **kwargs})


def test_a_folder_of_nothing_readable_is_one_line(corpus, tmp_path: Path):
    root, _ = corpus
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "a.wav").write_bytes(b"not audio")
    data = RAVDESS(root=str(root), split=SPLIT, verify=False, emotions=CLASSES,
                   unlabeled=str(empty))  # fmt: skip
    with pytest.raises(SERError, match="none of its 1 audio files could be read"):
        data.setup("fit")


def test_a_model_that_learns_from_labels_only_refuses_them(corpus, capsys):
    root, mine = corpus
    line = error_line(capsys, "fit", "--config", str(REPO / "configs" / "cnn2d.yaml"),
                      "--data", str(REPO / "configs" / "data" / "ravdess.yaml"),
                      "--data.root", str(root), "--data.unlabeled", str(mine),
                      "--data.emotions", f"[{', '.join(CLASSES)}]",
                      "--data.split.test_speakers", '["19"]', "--data.split.val_speakers", '["15"]',
                      "--trainer.max_epochs", "1")  # fmt: skip
    assert "--data.unlabeled: this model learns from labels only" in line


def test_clips_without_labels_add_no_cross_entropy_and_no_class_weight():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, UNLABELED, 2, UNLABELED, 1])
    task = EmotionClassifier(functools.partial(CNN2D, channels=[4]), 4, 8, 16000)
    plain = task.loss
    labeled = labels != UNLABELED
    torch.testing.assert_close(
        plain(logits, {"label": labels}), F.cross_entropy(logits[labeled], labels[labeled])
    )
    only_unlabeled = plain(logits, {"label": torch.full((5,), UNLABELED)})
    assert only_unlabeled.item() == 0.0  # not 0/0
    weights = balanced_class_weights([0, 0, 1, UNLABELED, UNLABELED, UNLABELED], 2)
    torch.testing.assert_close(weights, torch.tensor([0.75, 1.5]))  # 3 labelled clips


def test_distillation_learns_from_unlabeled_recordings(corpus, tmp_path: Path):
    """The student trains on labelled clips and on the recordings without labels, whose loss
    is the teachers' term alone; the training metrics count the labelled clips only."""
    root, mine = corpus
    teacher = write_checkpoint(tmp_path / "t.ckpt")
    cli = fit(root, "--config", DISTILL, "--data.emotions", f"[{', '.join(CLASSES)}]",
              "--data.unlabeled", str(mine), "--data.split.test_speakers", '["19"]',
              "--data.split.val_speakers", '["15"]', "--trainer.max_epochs", "1",
              "--model.init_args.teachers", f"[{teacher}]", "--test_after_fit", "false")  # fmt: skip
    train = cli.datamodule.datasets["train"]
    n_unlabeled = train.labels.count(UNLABELED)
    assert n_unlabeled == 4 * 3  # 4 recordings and their 2 offline speed copies
    assert cli.trainer.global_step > 0
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    # the teachers scored the crops of the recordings without labels too, not only the others
    assert cli.model.teacher.misses > len(train) - n_unlabeled
