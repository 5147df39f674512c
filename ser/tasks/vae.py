"""The VAE task: classification plus the VAE's reconstruction and KL terms, and a latent-space
plot at test time (seed S2)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from ser.errors import SERError
from ser.io import atomic_path
from ser.models.pooling import time_mask
from ser.models.vae import VAEOutput
from ser.tasks.classification import EmotionClassifier, NetFactory

log = logging.getLogger("ser")


def vae_losses(out: VAEOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction (squared error) and KL divergence to N(0, I), each summed per frame,
    averaged over the valid frames and divided by the feature count, so that their ratio is the
    ELBO's and their scale does not grow with the number of features."""
    n_features = out.target.shape[1]
    mask = time_mask(out.lengths, out.target.shape[-1])[:, None, :].to(out.target.dtype)  # (B,1,F)
    norm = mask.sum().clamp(min=1) * n_features
    recon = ((out.recon - out.target) ** 2 * mask).sum() / norm
    kl = -0.5 * (1 + out.log_var - out.mean**2 - out.log_var.exp())  # (B, Z, F)
    return recon, (kl * mask).sum() / norm


def project_2d(points: np.ndarray) -> np.ndarray:
    """``(N, Z)`` -> ``(N, 2)`` onto the first two principal components (PCA)."""
    centred = points - points.mean(0, keepdims=True)
    if points.shape[1] < 2:
        return np.pad(centred, ((0, 0), (0, 2 - points.shape[1])))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def latent_figure(points: np.ndarray, labels: np.ndarray, class_names: list[str]):
    """A scatter plot of clip latents projected to 2-D (PCA), coloured by emotion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = project_2d(points)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(class_names):
        sel = labels == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, alpha=0.75, color=cmap(k % 10), label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("VAE latent space (clip means, PCA)")
    ax.legend(fontsize=8, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig


class VAEClassifier(EmotionClassifier):
    """:class:`EmotionClassifier` for a net with ``encode_decode`` (:class:`ser.models.VAE`).

    Loss = cross-entropy + ``recon_weight`` * (reconstruction + beta * KL), with beta ramped
    linearly from 0 over ``beta_warmup_steps`` optimiser steps (KL annealing, so the latent is not
    collapsed before the decoder learns). ``recon`` and ``kl`` are logged per stage beside the
    shared metrics. At test time the clips' latent codes are projected to 2-D and plotted by emotion
    to TensorBoard and to ``<log dir>/test/latent_space.png``.

    Args:
        net: the VAE, given in YAML as ``class_path``/``init_args``.
        n_classes: number of classes (linked from the data).
        n_features: feature bins per frame (linked from the data).
        sample_rate: audio sample rate (linked from the data).
        class_names: class names in label order (linked from the data).
        optimizer: optimiser factory.
        lr_scheduler: optional scheduler factory.
        label_smoothing: cross-entropy label smoothing.
        pipeline: the data's feature pipeline spec (linked from the data).
        corpus: the data's corpus class (linked from the data).
        corpora: the names of a pool's corpora (linked from the data).
        class_weights: per-class cross-entropy weights (see :class:`EmotionClassifier`).
        beta: weight of the KL term after the warm-up.
        beta_warmup_steps: optimiser steps over which beta rises from 0 (0: no warm-up).
        recon_weight: weight of the VAE terms against the cross-entropy.
        plot_latent: plot the latent space at test time.
    """

    def __init__(
        self,
        net: NetFactory,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        pipeline: dict | None = None,
        corpus: str | None = None,
        corpora: list[str] | None = None,
        class_weights: Literal["balanced"] | list[float] | None = None,
        beta: float = 1.0,
        beta_warmup_steps: int = 500,
        recon_weight: float = 1.0,
        plot_latent: bool = True,
    ) -> None:
        super().__init__(
            net, n_classes, n_features, sample_rate, class_names, optimizer, lr_scheduler,
            label_smoothing, pipeline, corpus, corpora, class_weights,
        )  # fmt: skip
        if beta < 0 or beta_warmup_steps < 0 or recon_weight < 0:
            raise SERError(
                f"beta ({beta}), beta_warmup_steps ({beta_warmup_steps}) and recon_weight "
                f"({recon_weight}) must not be negative"
            )
        if not callable(getattr(self.net, "encode_decode", None)):
            raise SERError(
                f"VAEClassifier needs a net with encode_decode() such as ser.models.VAE, got "
                f"{type(self.net).__name__}; use ser.tasks.EmotionClassifier for other nets"
            )
        self._latents: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def current_beta(self) -> float:
        """The KL weight at this optimiser step."""
        warmup = self.hparams.beta_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, self.global_step / warmup)
        return self.hparams.beta * ramp

    def forward_batch(self, batch: dict, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net.encode_decode(batch["features"], batch["feature_lengths"])
        recon, kl = vae_losses(out)
        beta = self.current_beta()
        size = len(batch["label"])
        for name, value in (("recon", recon), ("kl", kl)):
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=size,
                     sync_dist=True)  # fmt: skip
        if stage == "train":
            self.log("train/beta", beta, on_step=False, on_epoch=True, batch_size=size)
        if stage == "test":
            latent = out.latent.detach().float()  # (B, Z); a recording's windows: their mean
            self._latents.append(
                (latent.mean(0, keepdim=True) if batch.get("windows") else latent).cpu()
            )
            self._labels.append(batch["label"].detach().cpu())
        return out.logits, self.hparams.recon_weight * (recon + beta * kl)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._latents, self._labels = [], []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if not (self.hparams.plot_latent and self._latents) or not self.trainer.is_global_zero:
            return
        points = torch.cat(self._latents).numpy()  # (N, Z)
        labels = torch.cat(self._labels).numpy()
        fig = latent_figure(points, labels, self.class_names)
        path = Path(self.trainer.log_dir or ".") / "test" / "latent_space.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        add_figure = getattr(getattr(self.logger, "experiment", None), "add_figure", None)
        if add_figure is not None:
            add_figure("test/latent_space", fig)  # closes the figure
        else:
            import matplotlib.pyplot as plt

            plt.close(fig)
        log.info("wrote latent space plot: %s", path)
