"""M5 on the raw waveform (Dai et al. 2017, "Very deep convolutional neural networks for raw
waveforms")."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import check_fraction, check_sizes
from ser.models.layers import conv_lengths, mask_padding
from ser.models.pooling import mean_std_pool


class M5(nn.Module):
    """A long first convolution with a large stride, then 3-tap convolutions, each followed by batch
    norm, ReLU and max-pooling; statistics pooling over the valid samples; a linear classifier.

    The first kernel and stride are given in milliseconds, so the receptive field is the same at any
    sample rate (Dai et al.: 80 taps, stride 4 at 8 kHz = 10 ms and 0.5 ms). Padding is masked after
    every block, so a clip's logits do not depend on the batch it is in.

    Args:
        n_classes: output classes.
        n_features: input channels (1 for the ``waveform`` front-end).
        sample_rate: audio sample rate (Hz); converts the millisecond sizes to samples.
        channels: output channels of each block; the first block is the long convolution.
        first_kernel_ms: length of the first kernel (ms).
        first_stride_ms: stride of the first convolution (ms).
        kernel_size: taps of the later convolutions.
        pool: max-pooling factor after each block but the last.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: list[int] = [128, 128, 256, 512],  # noqa: B006 - read-only literal
        first_kernel_ms: float = 10.0,
        first_stride_ms: float = 0.5,
        kernel_size: int = 3,
        pool: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes("M5", channels=list(channels), kernel_size=kernel_size, pool=pool)
        check_fraction("M5", "dropout", dropout)
        self.first_kernel = max(1, round(sample_rate * first_kernel_ms / 1000))
        self.first_stride = max(1, round(sample_rate * first_stride_ms / 1000))
        self.kernel_size, self.pool = kernel_size, pool
        self.blocks = nn.ModuleList()
        c_in = n_features
        for i, c_out in enumerate(channels):
            k, s = (self.first_kernel, self.first_stride) if i == 0 else (kernel_size, 1)
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(
                        c_in, c_out, k, stride=s, padding=0 if i == 0 else k // 2, bias=False
                    ),
                    nn.BatchNorm1d(c_out),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c_out
        self.max_pool = nn.MaxPool1d(pool)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
        x = mask_padding(x, lengths)  # (B, C, T)
        for i, block in enumerate(self.blocks):
            x = block(x)  # (B, C_i, T_i)
            if i == 0:
                lengths = conv_lengths(lengths, self.first_kernel, self.first_stride)
            lengths = lengths.clamp(max=x.shape[-1])
            x = mask_padding(x, lengths)
            if i < len(self.blocks) - 1 and x.shape[-1] >= self.pool:
                x = self.max_pool(x)  # (B, C_i, T_i // pool)
                lengths = conv_lengths(lengths, self.pool, self.pool).clamp(max=x.shape[-1])
                x = mask_padding(x, lengths)  # a window straddling the end is padding too
        return self.head(mean_std_pool(x, lengths))  # (B, n_classes)
