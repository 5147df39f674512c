"""Pooling over time that ignores the padding of shorter clips."""

from __future__ import annotations

import torch
from torch import nn


def time_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """``(B,)`` valid lengths -> ``(B, n_frames)`` bool mask of the valid frames."""
    return torch.arange(n_frames, device=lengths.device) < lengths[:, None]


def downsampled_lengths(lengths: torch.Tensor, factor: int, n_frames: int) -> torch.Tensor:
    """Valid frames left after pooling by ``factor`` (at least one, at most ``n_frames``)."""
    return torch.div(lengths, factor, rounding_mode="floor").clamp(min=1, max=n_frames)


def mean_std_pool(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Statistics pooling: ``(B, ..., C, F)`` -> ``(B, ..., 2C)`` mean and std over the valid
    frames (an encoder's ``(B, L, D, F)`` layers each pooled: ``(B, L, 2D)``)."""
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
    mask = time_mask(lengths, x.shape[-1]).to(x.dtype)  # (B, F)
    count = lengths.clamp(min=1).to(x.dtype)  # (B,)
    for _ in range(x.dim() - 2):  # unsqueezed, not viewed: a traced export keeps any batch size
        mask, count = mask.unsqueeze(1), count.unsqueeze(-1)  # (B, 1, ..., F), (B, 1, ...)
    mean = (x * mask).sum(-1) / count  # (B, ..., C)
    var = (((x - mean[..., None]) * mask) ** 2).sum(-1) / count
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)


def mean_pool(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, ..., C, F)`` -> ``(B, ..., C)`` mean over the valid frames."""
    return mean_std_pool(x, lengths)[..., : x.shape[-2]]


class AttentivePool(nn.Module):
    """Attentive statistics pooling: a learned score per frame, softmax over the valid frames,
    then the weighted mean and std (``(B, C, F) -> (B, 2C)``).

    With ``channel_wise`` and ``context`` it is ECAPA-TDNN's channel- and context-dependent
    pooling (Desplanques et al. 2020): a score per channel and frame, from the frame together with
    the clip's mean and std over its valid frames.

    Args:
        channels: ``C``.
        hidden: width of the scoring layer.
        channel_wise: a score per channel and frame, instead of one per frame.
        context: the scoring layer also sees the clip's mean and std over its valid frames.
    """

    def __init__(
        self, channels: int, hidden: int = 128, channel_wise: bool = False, context: bool = False
    ) -> None:
        super().__init__()
        self.context = context
        self.score = nn.Sequential(
            nn.Conv1d(3 * channels if context else channels, hidden, 1),
            nn.Tanh(),
            nn.Conv1d(hidden, channels if channel_wise else 1, 1),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        inputs = x
        if self.context:
            mean, std = mean_std_pool(x, lengths)[..., None].chunk(2, dim=1)  # (B, C, 1) each
            inputs = torch.cat([x, mean.expand_as(x), std.expand_as(x)], dim=1)  # (B, 3C, F)
        scores = self.score(inputs)  # (B, 1 or C, F)
        if lengths is not None:
            valid = time_mask(lengths.clamp(min=1), x.shape[-1])[:, None, :]  # (B, 1, F)
            scores = scores.masked_fill(~valid, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, 1 or C, F), zero on padding
        mean = (x * weights).sum(-1)  # (B, C)
        var = ((x - mean[..., None]) ** 2 * weights).sum(-1)
        return torch.cat([mean, (var + 1e-5).sqrt()], dim=1)
