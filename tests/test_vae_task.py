"""The VAE task: its loss parts, KL warm-up, and the latent-space plot at test time."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.cli import main
from ser.errors import SERError
from ser.models import M5, VAE
from ser.models.vae import VAEOutput
from ser.tasks import VAEClassifier
from ser.tasks.vae import project_2d, vae_losses

from .helpers import REPO


def output(mean, log_var, recon, target, lengths) -> VAEOutput:
    return VAEOutput(torch.zeros(len(lengths), 2), target, recon, mean, log_var,
                     mean.mean(-1), torch.tensor(lengths))  # fmt: skip


def test_vae_loss_parts():
    target = torch.randn(2, 4, 10)
    zeros = torch.zeros(2, 3, 10)
    recon, kl = vae_losses(output(zeros, zeros, target.clone(), target, [10, 6]))
    assert recon == 0 and kl == 0  # perfect reconstruction, posterior = prior
    # error of 1 everywhere on the valid frames, garbage in the padding of clip 2
    shifted = target + 1
    shifted[1, :, 6:] += 1000
    mean = torch.ones(2, 3, 10)  # KL per latent dim = 0.5 * mean^2 = 0.5
    recon, kl = vae_losses(output(mean, zeros, shifted, target, [10, 6]))
    torch.testing.assert_close(recon, torch.tensor(1.0))
    torch.testing.assert_close(kl, torch.tensor(3 * 0.5 / 4))  # summed over Z, per feature


factory = functools.partial(VAE, hidden=[8], latent_dim=2)  # what the CLI builds from YAML


def test_beta_warms_up_and_bad_settings_are_named():
    task = VAEClassifier(factory, 3, 5, 16000, beta=0.5, beta_warmup_steps=100)
    assert task.current_beta() == 0.0  # global_step 0
    with pytest.raises(SERError, match="encode_decode"):
        VAEClassifier(M5, 3, 1, 16000)
    with pytest.raises(SERError, match="must not be negative"):
        VAEClassifier(factory, 3, 5, 16000, beta=-1.0)


def test_project_2d_keeps_the_main_direction():
    points = torch.randn(50, 4).numpy()
    points[:, 2] *= 100
    xy = project_2d(points)
    assert xy.shape == (50, 2)
    assert abs(abs(np.corrcoef(xy[:, 0], points[:, 2])[0, 1]) - 1) < 1e-3


def test_vae_config_fits_tests_and_plots(ravdess_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main([
        "fit", "--config", str(REPO / "configs" / "vae.yaml"),
        "--data", str(REPO / "configs" / "data" / "ravdess.yaml"), "--data.root", str(ravdess_root),
        "--data.split.test_speakers", '["19", "20"]', "--data.split.val_speakers", '["15", "16"]',
        "--data.batch_size", "8", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--model.init_args.net.init_args.hidden", "[16]", "--model.init_args.beta_warmup_steps", "4",
    ])  # fmt: skip
    logged = cli.trainer.logged_metrics
    for key in ("test/recon", "test/kl", "test/uar", "test/loss"):
        assert torch.isfinite(logged[key]), key
    log_dir = Path(cli.trainer.log_dir)
    events = EventAccumulator(str(log_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/recon", "train/kl", "train/beta", "val/recon", "val/kl", "val/uar"} <= scalars
    assert events.Scalars("train/beta")[-1].value > 0  # warmed up
    assert "test/latent_space" in events.Tags()["images"]
    test_dir = log_dir / "test"
    assert (test_dir / "latent_space.png").stat().st_size > 0
    assert json.loads((test_dir / "metrics.json").read_text())["n_clips"] == 16
