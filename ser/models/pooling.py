"""Pooling over time that ignores the padding of shorter clips."""

from __future__ import annotations

import torch


def time_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """``(B,)`` valid lengths -> ``(B, n_frames)`` bool mask of the valid frames."""
    return torch.arange(n_frames, device=lengths.device) < lengths[:, None]


def downsampled_lengths(lengths: torch.Tensor, factor: int, n_frames: int) -> torch.Tensor:
    """Valid frames left after pooling by ``factor`` (at least one, at most ``n_frames``)."""
    return torch.div(lengths, factor, rounding_mode="floor").clamp(min=1, max=n_frames)


def mean_std_pool(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Statistics pooling: ``(B, C, F)`` -> ``(B, 2C)`` mean and std over the valid frames."""
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
    mask = time_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)  # (B, 1, F)
    count = lengths.clamp(min=1).to(x.dtype)[:, None]  # (B, 1)
    mean = (x * mask).sum(-1) / count  # (B, C)
    var = (((x - mean[..., None]) * mask) ** 2).sum(-1) / count
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=1)
