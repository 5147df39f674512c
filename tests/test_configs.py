"""Every committed experiment config runs one training and one validation batch on toy data."""

import re
from pathlib import Path

import pytest

from ser.cli import main
from ser.data import RAVDESS

from .helpers import CONFIG, REPO, write_checkpoint, write_encoder

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))  # recipes: tests/test_recipes.py


def config_args(config: Path, tmp_path: Path) -> list[str]:
    """The ``--config`` arguments that run ``config``: distill.yaml adds a task to a model config
    and needs a teacher; distill_on_the_fly.yaml adds to both, and its teacher the student's
    front-end; robust.yaml adds to a model config, noisy.yaml to voice.yaml."""
    if config.name == "robust.yaml":
        return ["--config", CONFIG, "--config", str(config)]
    if config.name == "noisy.yaml":
        return ["--config", str(REPO / "configs" / "voice.yaml"), "--config", str(config)]
    if not config.name.startswith("distill"):
        return ["--config", str(config)]
    frontend = {"class_path": "ser.transforms.LogMel", "init_args": {"hop_ms": 16.0}}  # CONFIG's
    teacher = write_checkpoint(
        tmp_path / "teacher.ckpt", frontend, class_names=list(RAVDESS.EMOTIONS)
    )
    configs = ["--config", CONFIG, "--config", str(REPO / "configs" / "distill.yaml")]
    if config.name != "distill.yaml":
        configs += ["--config", str(config)]
    return [*configs, "--model.init_args.teachers", f"[{teacher}]"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_runs_one_batch(config: Path, ravdess_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundle = re.search(r"bundle: (\w+)", config.read_text())
    if bundle:  # a pretrained encoder: a tiny random one in its real file format, offline
        write_encoder(monkeypatch, tmp_path / "torch", bundle.group(1))
    cli = main([
        "fit", *config_args(config, tmp_path), "--data", str(REPO / "configs" / "data" / "ravdess.yaml"),
        "--data.root", str(ravdess_root), "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]', "--data.batch_size", "4",
        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    assert cli.trainer.global_step == 1  # one optimiser step ran
    assert cli.model.n_classes == cli.datamodule.n_classes == 8  # linked from the data
    if config.name == "robust.yaml":  # the fragment's settings reach the corpus given after it
        pipeline = cli.datamodule.pipeline
        assert pipeline.normalization.level == "speaker" and len(pipeline.wave_augment) == 8
    if config.name == "noisy.yaml":  # voice.yaml's encoder, copies in conditions, the noise gate
        pipeline, train = cli.datamodule.pipeline, cli.datamodule.datasets["train"]
        assert type(pipeline.frontend).__name__ == "VoiceEmbedding" and pipeline.gate is not None
        assert pipeline.offline_copies == 2 and len(pipeline.wave_augment) == 7
        assert len(train) == 3 * len({c.path for c in train.clips}) > 0  # each clip + 2 copies


@pytest.mark.parametrize("fragment, epochs", [
    ("schedules/cosine60.yaml", 60),  # any task
    ("distill.yaml", 20),  # the student's own schedule: 20 epochs of clips and 2 copies each
], ids=["cosine60", "distill"])  # fmt: skip
def test_schedule_decays_the_rate_to_zero(
    fragment: str, epochs: int, ravdess_root: Path, tmp_path: Path, monkeypatch
):
    """A schedule fragment after a model config: its epochs, and a rate that follows a cosine
    from the optimiser's to 0 over them."""
    monkeypatch.chdir(tmp_path)
    teacher = write_checkpoint(tmp_path / "teacher.ckpt", class_names=list(RAVDESS.EMOTIONS))
    teachers = ["--model.init_args.teachers", f"[{teacher}]"] if fragment == "distill.yaml" else []
    cli = main([
        "fit", "--config", CONFIG, "--config", str(REPO / "configs" / fragment), *teachers,
        "--data", str(REPO / "configs" / "data" / "ravdess.yaml"),
        "--data.root", str(ravdess_root), "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]', "--data.batch_size", "4",
        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    assert cli.config["fit"]["trainer"]["max_epochs"] == epochs  # fast_dev_run runs 1 of them
    if fragment == "distill.yaml":  # each training clip, then 2 copies of it at another speed
        waves = cli.datamodule.datasets["train"].waves
        n = len(waves) // 3
        assert len(waves) == 3 * n > 0
        for copy in (1, 2):
            assert all(abs(waves[copy * n + i].numel() / w.numel() - 1) > 0.05
                       for i, w in enumerate(waves[:n]))  # fmt: skip
    configured = cli.model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    start = optimizer.param_groups[0]["lr"]
    rates = []
    for _ in range(epochs):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[epochs // 2 - 1] == pytest.approx(start / 2, rel=1e-6)  # half way: half the rate
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
