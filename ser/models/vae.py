"""A frame-level variational autoencoder whose latent code, with pooled hand-crafted features,
feeds an emotion classifier (seed S2)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from ser.errors import check_fraction, check_sizes
from ser.models.layers import RunningNorm, mask_padding
from ser.models.pooling import mean_std_pool


@dataclass
class VAEOutput:
    """What :meth:`VAE.encode_decode` returns; ``F`` = frames, ``Z`` = latent size."""

    logits: torch.Tensor  # (B, n_classes)
    target: torch.Tensor  # (B, n_features, F) the standardised input the decoder reconstructs
    recon: torch.Tensor  # (B, n_features, F)
    mean: torch.Tensor  # (B, Z, F)
    log_var: torch.Tensor  # (B, Z, F)
    latent: torch.Tensor  # (B, Z) the clip's mean latent code over its valid frames
    lengths: torch.Tensor  # (B,)


def _conv_stack(sizes: list[int], kernel_size: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2) for a, b in pairwise(sizes)
    )


class VAE(nn.Module):
    """Encoder (1D convs over frames) -> per-frame mean / log-variance -> reparameterised latent ->
    decoder (1D convs) reconstructing the standardised frame features. The classifier sees the
    latent sequence's mean and std over the valid frames, concatenated with the mean and std of the
    input features themselves (the pooled hand-crafted features of S2).

    ``forward`` returns logits like every net; :class:`~ser.tasks.VAEClassifier` calls
    :meth:`encode_decode` for the reconstruction and KL terms. The latent is sampled while training
    and is the mean otherwise, so evaluation is deterministic.

    Args:
        n_classes: output classes.
        n_features: channels per frame (e.g. the ``handcrafted`` front-end).
        sample_rate: unused; part of every net's signature.
        hidden: channels of the encoder and decoder convolutions.
        latent_dim: size of the latent code per frame.
        kernel_size: taps of the convolutions over frames.
        classifier_hidden: hidden units of the classifier head.
        dropout: dropout in the classifier head.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        hidden: list[int] = [128, 64],  # noqa: B006 - read-only literal
        latent_dim: int = 16,
        kernel_size: int = 5,
        classifier_hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_sizes("VAE", hidden=list(hidden), latent_dim=latent_dim, kernel_size=kernel_size,
                    classifier_hidden=classifier_hidden)  # fmt: skip
        check_fraction("VAE", "dropout", dropout)
        self.norm = RunningNorm(n_features)
        self.encoder = _conv_stack([n_features, *hidden], kernel_size)
        self.to_moments = nn.Conv1d(hidden[-1], 2 * latent_dim, 1)
        self.decoder = _conv_stack([latent_dim, *hidden[::-1]], kernel_size)
        self.to_features = nn.Conv1d(hidden[0], n_features, 1)
        self.activation = nn.ELU()
        self.head = nn.Sequential(
            nn.Linear(2 * latent_dim + 2 * n_features, classifier_hidden),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Linear(classifier_hidden, n_classes),
        )

    def _run(self, convs: nn.ModuleList, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for conv in convs:
            x = mask_padding(self.activation(conv(x)), lengths)
        return x

    def encode_decode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> VAEOutput:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
        lengths = lengths.clamp(min=1, max=x.shape[-1])
        target = self.norm(x, lengths)  # (B, C, F)
        h = self._run(self.encoder, target, lengths)  # (B, H, F)
        mean, log_var = self.to_moments(h).chunk(2, dim=1)  # (B, Z, F) each
        log_var = log_var.clamp(-10.0, 10.0)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        z = mask_padding(z, lengths)
        recon = self.to_features(self._run(self.decoder, z, lengths))  # (B, C, F)
        summary = torch.cat([mean_std_pool(z, lengths), mean_std_pool(target, lengths)], dim=1)
        latent = mean_std_pool(mask_padding(mean, lengths), lengths)[:, : mean.shape[1]]
        return VAEOutput(
            logits=self.head(summary), target=target, recon=mask_padding(recon, lengths),
            mean=mean, log_var=log_var, latent=latent, lengths=lengths,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode_decode(x, lengths).logits  # (B, n_classes)
