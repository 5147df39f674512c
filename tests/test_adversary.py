"""Domain-adversarial training: a gradient-reversal domain classifier on the net's embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ser.cli import main
from ser.errors import SERError
from ser.tasks.adversary import DomainAdversary, reverse_gradient

from .helpers import fit, write_ravdess

ADVERSARY = ["--model.adversary", "ser.tasks.adversary.DomainAdversary"]


def test_reversed_gradient_points_the_other_way_scaled():
    x = torch.randn(4, 3, requires_grad=True)
    (reverse_gradient(x, 0.5) * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))


def test_strength_grows_from_zero_to_the_weight():
    adversary = DomainAdversary(weight=0.4)
    assert adversary.strength(0.0) == 0.0
    assert 0.0 < adversary.strength(0.1) < adversary.strength(0.5) < 0.4
    assert adversary.strength(1.0) == pytest.approx(0.4, abs=1e-4)


def test_the_domain_loss_pushes_the_embedding_to_hide_the_domain():
    """The adversary's head descends its loss while the embedding ascends it."""
    adversary = DomainAdversary(weight=1.0, hidden=8)
    adversary.build(5)
    adversary.set_domains(["a", "b"])
    embedding = torch.randn(6, 5, requires_grad=True)
    batch = {"speaker": ["a", "b"] * 3}
    loss, _ = adversary.loss(embedding, batch, progress=1.0)
    loss.backward()
    plain = embedding.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(adversary.head(plain), torch.tensor([0, 1] * 3)).backward()
    strength = adversary.strength(1.0)
    torch.testing.assert_close(embedding.grad, -strength * plain.grad)


def test_bad_adversary_settings_are_one_line():
    with pytest.raises(SERError, match="domain .* must be speaker or corpus"):
        DomainAdversary(domain="gender")
    with pytest.raises(SERError, match="needs two or more"):
        DomainAdversary(domain="corpus").set_domains([""] * 5)


def test_fit_with_a_speaker_adversary_logs_it_and_the_checkpoint_tests(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 3, 15, 16, 19, 20))
    cli = fit(root, "--trainer.max_epochs", "2", *ADVERSARY, "--model.adversary.domain",
              "speaker", "--test_after_fit", "false")  # fmt: skip
    assert cli.model.adversary.index == {"01": 0, "02": 1, "03": 2}  # the training speakers
    assert "train/domain_loss" in cli.trainer.callback_metrics
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    main(["test", "--config", str(run / "config.yaml"),
          "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])  # fmt: skip
    assert (run.parent / "version_1" / "test" / "metrics.json").is_file()


def test_corpus_adversary_on_one_corpus_is_refused_at_start(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SERError, match="needs two or more"):
        fit(write_ravdess(tmp_path / "ravdess"), *ADVERSARY, "--model.adversary.domain", "corpus")
