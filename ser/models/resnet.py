"""A thin ResNet on log-mel spectrograms, as in speaker verification (the "thin ResNet-34" of Chung,
Nagrani & Zisserman's VoxCeleb2 systems): BasicBlocks of few channels over the (frequency, time)
image, then statistics pooling over time. Padding is zeroed before every 3x3 convolution and the
valid frames are followed through each stride, so a clip's logits do not depend on its batch."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import SERError, check_fraction, check_sizes
from ser.models.layers import conv_lengths, mask_padding
from ser.models.pooling import mean_std_pool


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN where the shape changes), then ReLU.

    Shapes: ``(B, C_in, M, F), (B,) -> (B, C_out, M / stride, F / stride), (B,)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x's padding is zero: what a clip alone would be padded with by the convolution
        lengths = conv_lengths(lengths, 3, self.stride, padding=1)
        y = self.norm1(self.conv1(x)).relu()  # (B, C_out, M', F')
        y = self.norm2(self.conv2(mask_padding(y, lengths)))
        return mask_padding((y + self.shortcut(x)).relu(), lengths), lengths


class ResNet(nn.Module):
    """A 3x3 conv stem, then stages of :class:`BasicBlock` (each stage after the first halves
    frequency and time), frequency folded into channels, mean and std over the valid frames, and
    a linear classifier.

    ``layers: [2, 2, 2, 2]`` is a thin ResNet-18, ``[3, 4, 6, 3]`` a thin ResNet-34.

    Args:
        n_classes: output classes.
        n_features: frequency bins of the input (``n_mels``).
        sample_rate: unused; part of every net's signature.
        channels: output channels of each stage.
        layers: BasicBlocks in each stage.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: list[int] = [16, 32, 64, 128],  # noqa: B006 - read-only literal
        layers: list[int] = [2, 2, 2, 2],  # noqa: B006 - read-only literal
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_sizes("ResNet", channels=list(channels), layers=list(layers), n_classes=n_classes)
        check_fraction("ResNet", "dropout", dropout)
        if not channels or len(channels) != len(layers):
            raise SERError(
                f"ResNet: channels={channels} and layers={layers} must have one entry per stage"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        blocks, c_in, freq = [], channels[0], n_features
        for stage, (c_out, n_blocks) in enumerate(zip(channels, layers, strict=True)):
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride))
                c_in, freq = c_out, (freq - 1) // stride + 1
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in * freq, n_classes))

    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps before pooling, frequency folded into channels, and their valid frames:
        ``(B, n_features, F), (B,) -> (B, C * M', F'), (B,)``."""
        if lengths is None:
            lengths = torch.full(x.shape[:1], x.shape[-1], device=x.device)
        lengths = lengths.clamp(min=1, max=x.shape[-1])
        x = mask_padding(x, lengths).unsqueeze(1)  # (B, 1, n_features, F)
        x = mask_padding(self.stem(x), lengths)  # (B, C, n_features, F)
        for block in self.blocks:
            x, lengths = block(x, lengths)  # (B, C', M', F')
        return x.flatten(1, 2), lengths  # (B, C' * M', F')

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(mean_std_pool(*self.encode(x, lengths)))  # (B, n_classes)
