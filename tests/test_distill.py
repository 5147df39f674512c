"""Distillation: the loss, the teachers' cache, a student learning from a teacher, and a student
checkpoint that the inference commands take as they take any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ser.__main__ import main as ser_main
from ser.data.dataset import Clip, ClipDataset
from ser.errors import SERError
from ser.inference import Ensemble, load_models
from ser.tasks.distill import distillation_loss
from ser.tasks.teacher import Teacher
from ser.transforms import FeaturePipeline

from .helpers import (
    CLASSES,
    CONFIG,
    LOGMEL,
    MFCC,
    RATE,
    REPO,
    figures_of_predictions,
    fit,
    noise,
    write_checkpoint,
    write_ravdess,
)  # fmt: skip

DISTILL = str(REPO / "configs" / "distill.yaml")
EMOTIONS = f"[{', '.join(CLASSES)}]"  # the toy teachers' classes, in their order


def test_loss_is_cross_entropy_at_weight_zero_and_kl_at_one():
    torch.manual_seed(0)
    logits, teacher = torch.randn(6, 4) * 3, torch.randn(6, 4).log_softmax(-1)
    labels = torch.randint(4, (6,))
    ce = F.cross_entropy(logits, labels, label_smoothing=0.1)
    loss, _ = distillation_loss(logits, teacher, ce, weight=0.0, temperature=3.0)
    assert torch.equal(loss, ce)
    # weight 1: T^2 * KL(teacher_T || student_T), written out
    t = 3.0
    p_teacher = (teacher / t).softmax(-1)
    kl = (p_teacher * (p_teacher.log() - (logits / t).log_softmax(-1))).sum(-1).mean()
    loss, _ = distillation_loss(logits, teacher, ce, weight=1.0, temperature=t)
    assert loss.item() == pytest.approx(t**2 * kl.item(), rel=1e-5)
    # a teacher probability that underflowed to 0 stays finite
    teacher[0, 0] = -float("inf")
    assert distillation_loss(logits, teacher, ce, 0.5, t)[0].isfinite()


def test_student_moves_toward_the_teachers_distribution():
    torch.manual_seed(0)
    features = torch.randn(64, 10)
    teacher = (features @ torch.randn(10, 4)).log_softmax(-1)  # a soft, learnable distribution
    labels = torch.randint(4, (64,))  # labels that disagree with it
    student = torch.nn.Linear(10, 4)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05)

    def kl() -> float:
        with torch.no_grad():
            q = student(features).log_softmax(-1)
        return F.kl_div(q, teacher, log_target=True, reduction="batchmean").item()

    before = kl()
    for _ in range(100):
        logits = student(features)
        ce = F.cross_entropy(logits, labels)
        loss, _ = distillation_loss(logits, teacher, ce, weight=0.9, temperature=2.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert kl() < 0.25 * before


def test_teacher_outputs_are_cached_per_crop_and_recomputed_when_a_teacher_changes(
    tmp_path: Path,
):
    paths = [write_checkpoint(tmp_path / f"t{i}.ckpt", seed=i) for i in range(2)]
    waves = torch.stack([torch.from_numpy(noise(0.5, seed=s)) for s in range(3)])  # (3, T)
    crops = [w[:n] for w, n in zip(waves, (8000, 6000, 7000), strict=True)]

    first = Teacher(paths, CLASSES, RATE)
    out = first.log_probs(crops)
    assert (first.hits, first.misses) == (0, 6)  # 3 crops x 2 teachers, all computed
    with torch.no_grad():  # what `ser predict --ensemble` computes, crop by crop
        ensemble = load_models(paths)
        expected = torch.cat([ensemble(c[None]) for c in crops])
    assert torch.allclose(out, expected, atol=1e-5)
    first.save()

    again = Teacher(paths, CLASSES, RATE)  # a later run
    assert torch.equal(again.log_probs(crops), out)
    assert (again.hits, again.misses) == (6, 0)

    write_checkpoint(paths[1], seed=5)  # one teacher retrained in place
    changed = Teacher(paths, CLASSES, RATE)
    new = changed.log_probs(crops)
    assert (changed.hits, changed.misses) == (3, 3)  # only the changed teacher runs again
    assert not torch.allclose(new, out, atol=1e-3)


def test_teachers_must_fit_the_students_data(tmp_path: Path):
    path = write_checkpoint(tmp_path / "t.ckpt")
    with pytest.raises(SERError, match="has class_names"):
        Teacher([path], CLASSES[::-1], RATE)
    with pytest.raises(SERError, match="has sample_rate"):
        Teacher([path], CLASSES, 8000)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> Path:
    """The run folder of a student distilled on toy RAVDESS for 2 epochs (and then again)."""
    tmp = tmp_path_factory.mktemp("distill")
    root = write_ravdess(tmp / "ravdess")
    teachers = [write_checkpoint(tmp / f"t{i}.ckpt", seed=i) for i in range(2)]
    args = ["--config", DISTILL, "--data.emotions", EMOTIONS, "--trainer.max_epochs", "2",
            "--model.init_args.teachers", f"[{teachers[0]}, {teachers[1]}]"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("SER_CACHE_DIR", str(tmp / "cache"))
        fit(root, *args)
        cli = fit(root, *args, "--test_after_fit", "false")
    # 16 training clips (2 actors x 4 emotions x 2) and 2 speed copies of each: 48 clips, one crop
    # of each an epoch
    assert len(cli.datamodule.datasets["train"]) == 48
    files = sorted((tmp / "cache" / "teachers").glob("*.pt"))
    entries = [torch.load(p, weights_only=True)["keys"] for p in files]
    assert len(entries) == 2 and all(0 < len(keys) <= 48 * 2 for keys in entries)
    assert cli.model.teacher.misses == 0  # the second run computed nothing anew...
    assert cli.model.teacher.hits == 2 * 2 * 48  # ...for 2 teachers x 2 epochs x 48 crops
    return tmp / "lightning_logs" / "distill" / "version_0"


def test_student_checkpoint_is_an_ordinary_ser_checkpoint(distilled, tmp_path: Path, capsys):
    metrics = json.loads((distilled / "test" / "metrics.json").read_text())
    assert metrics["n_clips"] == 16  # tested as every task is
    recomputed = figures_of_predictions(distilled / "test" / "predictions.csv")
    assert metrics["uar"] == pytest.approx(recomputed["uar"]) and recomputed["n_clips"] == 16
    checkpoint = distilled / "checkpoints" / "last.ckpt"
    audio = write_ravdess(tmp_path / "audio", actors=(19,), clips_per_emotion=1)
    ser_main(["predict", str(checkpoint), str(audio), "--output", str(tmp_path / "p.json")])
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 4 and all(r["emotion"] in CLASSES for r in rows)


def test_crop_positions_fix_each_clips_training_crops():
    wave = torch.arange(1000.0)
    data = ClipDataset([wave], [0], [Clip(Path("a.wav"), "happy", "1")], 400, True, 3)
    crops = data.training_crops(0)
    assert [int(c[0]) for c in crops] == [0, 300, 600]  # first, middle, last possible start
    drawn = {int(data[0, seed]["waveform"][0]) for seed in range(30)}
    assert drawn == {0, 300, 600}


def test_waveform_augmentation_is_refused(tmp_path: Path, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=2)
    teacher = write_checkpoint(tmp_path / "t.ckpt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SERError, match="waveform augmentation on the fly"):
        fit(root, "--config", DISTILL, "--data.emotions", EMOTIONS,
            "--data", str(REPO / "configs" / "data" / "augment" / "onthefly.yaml"),
            "--data.augment.offline_copies", "0",  # else its augmentations make distill's copies
            "--data.split.test_speakers", '["19"]', "--data.split.val_speakers", '["15"]',
            "--model.init_args.teachers", f"[{teacher}]")  # fmt: skip


def test_teachers_on_the_fly_score_the_students_own_features(tmp_path: Path):
    paths = [write_checkpoint(tmp_path / f"t{i}.ckpt", seed=i) for i in range(3)]
    student = FeaturePipeline(LOGMEL, RATE)
    teacher = Teacher(paths, CLASSES, RATE, pipeline=student)
    assert teacher.caches == []  # nothing cached on the fly
    wave = torch.randn(2, RATE // 2, generator=torch.Generator().manual_seed(0))  # (2, T)
    lengths = torch.tensor([RATE // 2, RATE // 4])
    features, feature_lengths = student(wave, lengths)
    mixed = 0.7 * features + 0.3 * features.flip(0)  # what mixup hands the student
    scored = teacher.score_features(mixed, feature_lengths)  # (2, n_classes)
    expected = Ensemble.combine([m.net(mixed, feature_lengths) for m in load_models(paths).members])
    torch.testing.assert_close(scored, expected)
    torch.manual_seed(0)
    one = torch.stack([teacher.score_features(mixed, feature_lengths, members=1)
                       for _ in range(30)])  # fmt: skip
    # one teacher at a time: each draw is one member's output, and every member is drawn
    singles = [m.net(mixed, feature_lengths).log_softmax(-1) for m in load_models(paths).members]
    matches = {next(i for i, s in enumerate(singles) if torch.allclose(row, s, atol=1e-5))
               for row in one}  # fmt: skip
    assert matches == {0, 1, 2}


def test_teachers_on_the_fly_need_the_students_features(tmp_path: Path):
    path = write_checkpoint(tmp_path / "t.ckpt", frontend=MFCC)
    with pytest.raises(SERError, match="makes other features than the student's"):
        Teacher([path], CLASSES, RATE, pipeline=FeaturePipeline(LOGMEL, RATE))


def test_student_on_the_fly_trains_with_mixup_and_augmentation(tmp_path: Path, monkeypatch, capsys):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=2)
    frontend = {"class_path": "ser.transforms.LogMel", "init_args": {"hop_ms": 16.0}}
    teachers = [write_checkpoint(tmp_path / f"t{i}.ckpt", frontend, seed=i) for i in range(2)]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    split = ["--data.split.test_speakers", '["19"]', "--data.split.val_speakers", '["15"]']
    teacher_args = ["--model.init_args.teachers", f"[{teachers[0]}, {teachers[1]}]",
                    "--model.init_args.on_the_fly", "true"]  # fmt: skip
    cli = fit(root, "--config", DISTILL, "--data.emotions", EMOTIONS, *split,
              "--data", str(REPO / "configs" / "data" / "augment" / "onthefly.yaml"),
              "--data", str(REPO / "configs" / "data" / "augment" / "mixup.yaml"),
              "--data.crop_positions", "null",
              "--trainer.max_epochs", "1", "--test_after_fit", "false", *teacher_args,
              "--model.init_args.teachers_per_step", "1")  # fmt: skip
    assert cli.trainer.global_step > 0 and cli.model.teacher.members
    assert not (tmp_path / "cache" / "teachers").exists()
    with pytest.raises(SystemExit):  # the user's command line: one error line
        ser_main(["fit", "--config", CONFIG, "--config", DISTILL,
                  "--model.init_args.teachers", f"[{teachers[0]}]",
                  "--model.init_args.teachers_per_step", "1"])  # fmt: skip
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --model.init_args.teachers_per_step (1) must be 1 or more, with "
        "--model.init_args.on_the_fly true (cached outputs cost nothing to combine)"
    )
