"""Building blocks shared by the sequence nets: masking, length arithmetic, input statistics and
packed LSTMs, so that padding never reaches a clip's prediction."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ser.models.pooling import time_mask


def mask_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames of ``x`` (B, ..., F) beyond each clip's length."""
    mask = time_mask(lengths, x.shape[-1])  # (B, F)
    return x * mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1]).to(x.dtype)


def conv_lengths(
    lengths: torch.Tensor, kernel: int, stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """Valid output frames of a convolution or pooling over clips of ``lengths`` (at least one)."""
    return (torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1).clamp(
        min=1
    )


class RunningNorm(nn.Module):
    """Standardise each feature with its mean and std over every valid training frame seen so far
    (seed S3's dataset statistics). Padding is left out of the statistics and zeroed.

    Shapes: ``(B, C, F), (B,) -> (B, C, F)``.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(n_features, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor, lengths: torch.Tensor) -> None:
        mask = time_mask(lengths, x.shape[-1])[:, None, :]  # (B, 1, F)
        n = mask.sum().double()
        if n == 0:
            return
        xd = x.double()
        mean = (xd * mask).sum((0, 2)) / n  # (C,)
        m2 = (((xd - mean[None, :, None]) * mask) ** 2).sum((0, 2))
        total = self.count + n
        diff = mean - self.mean
        # Chan et al.'s parallel update of the running mean and sum of squared deviations
        self.m2 += m2 + diff**2 * self.count * n / total
        self.mean += diff * n / total
        self.count.copy_(total)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update(x, lengths)
        if self.count == 0:
            return mask_padding(x, lengths)
        std = (self.m2 / self.count.clamp(min=1)).sqrt().clamp(min=1e-5)
        x = (x - self.mean.to(x.dtype)[:, None]) / std.to(x.dtype)[:, None]
        return mask_padding(x, lengths)


def pack(x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    """``(B, C, F)`` features -> a packed batch of ``(F_i, C)`` sequences of the valid frames."""
    return pack_padded_sequence(
        x.transpose(1, 2), lengths.clamp(min=1, max=x.shape[-1]).cpu(), batch_first=True,
        enforce_sorted=False,
    )  # fmt: skip


def unpack(packed: PackedSequence, n_frames: int) -> torch.Tensor:
    """A packed batch -> ``(B, H, n_frames)``, zero beyond each sequence."""
    out, _ = pad_packed_sequence(packed, batch_first=True, total_length=n_frames)  # (B, F, H)
    return out.transpose(1, 2)


def packed_dropout(packed: PackedSequence, dropout: nn.Module) -> PackedSequence:
    """Apply ``dropout`` to the frames of a packed batch."""
    return packed._replace(data=dropout(packed.data))
