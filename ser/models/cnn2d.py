"""A 2D CNN on spectrogram-like features (log-mel, MFCC)."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import SERError, check_fraction, check_sizes
from ser.models.pooling import downsampled_lengths, mean_std_pool


class CNN2D(nn.Module):
    """Conv blocks (conv-BN-ReLU, ``convs_per_block`` times, then 2x2 max-pool), then statistics
    pooling over time.

    Frequency is averaged out after the blocks and time is pooled over the valid frames only, so
    any clip length works and padding does not leak into the prediction.

    Args:
        n_classes: output classes.
        n_features: feature bins of the input (``n_mels`` / ``n_mfcc``).
        sample_rate: unused; part of every net's signature.
        channels: output channels of each block.
        convs_per_block: 3x3 convolutions in each block.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: list[int] = [32, 64, 128, 256],  # noqa: B006 - read-only, and jsonargparse needs a literal
        convs_per_block: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_sizes("CNN2D", channels=list(channels), n_classes=n_classes)
        check_fraction("CNN2D", "dropout", dropout)
        #: Each block halves frequency and time: fewer frames (or bins) than this leave none.
        self.min_frames = 2 ** len(channels)
        if n_features < self.min_frames:
            raise SERError(
                f"CNN2D: {len(channels)} pooling blocks need at least {self.min_frames} feature bins, "
                f"the front-end gives {n_features} (n_mels / n_mfcc); use more bins or fewer channels"
            )
        blocks, c_in = [], 1
        for c_out in channels:
            for _ in range(convs_per_block):
                blocks += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            blocks.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*blocks)
        self.time_factor = self.min_frames
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * c_in, c_in),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(c_in, n_classes),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(x.unsqueeze(1))  # (B, 1, n_features, F) -> (B, C, n_features', F')
        x = x.mean(dim=2)  # (B, C, F')
        if lengths is not None:
            lengths = downsampled_lengths(lengths, self.time_factor, x.shape[-1])
        return self.head(mean_std_pool(x, lengths))  # (B, n_classes)
