"""ECAPA-TDNN (Desplanques, Thienpondt & Demuynck 2020, "ECAPA-TDNN: Emphasized Channel
Attention, Propagation and Aggregation in TDNN Based Speaker Verification"), laid out as
SpeechBrain's, the network of its emotion recipe. Padding is zeroed before every convolution, so
a clip's logits do not depend on the batch it is in."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import SERError, check_fraction, check_sizes
from ser.models.layers import mask_padding
from ser.models.pooling import AttentivePool, mean_pool


class TDNNBlock(nn.Module):
    """Conv1d, ReLU, batch norm; padding zeroed after. Shapes: ``(B, C_in, F) -> (B, C_out, F)``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation, padding=padding)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return mask_padding(self.norm(self.conv(x).relu()), lengths)


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convolution: the channels split in ``scale`` groups; group ``i``
    is convolved after adding group ``i - 1``'s output, so later groups see wider contexts."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(
            TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(self.scale, dim=1)  # scale x (B, C / scale, F)
        out, y = [groups[0]], groups[0]
        for i, conv in enumerate(self.convs, start=1):
            y = conv(groups[i] if i == 1 else groups[i] + y, lengths)
            out.append(y)
        return torch.cat(out, dim=1)  # (B, C, F)


class SqueezeExcite(nn.Module):
    """Channel gates from the mean over the valid frames. Shapes: ``(B, C, F) -> (B, C, F)``."""

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv1d(channels, bottleneck, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(bottleneck, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return x * self.gate(mean_pool(x, lengths)[..., None])  # gates (B, C, 1)


class SERes2Block(nn.Module):
    """1x1 conv, Res2Net dilated conv, 1x1 conv, squeeze-excitation, plus the input."""

    def __init__(
        self, channels: int, scale: int, kernel_size: int, dilation: int, se_channels: int
    ) -> None:
        super().__init__()
        self.conv_in = TDNNBlock(channels, channels)
        self.res2 = Res2Conv(channels, scale, kernel_size, dilation)
        self.conv_out = TDNNBlock(channels, channels)
        self.se = SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.res2(self.conv_in(x, lengths), lengths)
        return x + self.se(self.conv_out(y, lengths), lengths)


class ECAPA(nn.Module):
    """ECAPA-TDNN: a Conv1d stem, SE-Res2Net blocks of growing dilation, multi-layer feature
    aggregation (the blocks' outputs concatenated, then a 1x1 conv), channel- and
    context-dependent attentive statistics pooling over the valid frames, an FC + batch-norm
    embedding and a linear classifier.

    Args:
        n_classes: output classes.
        n_features: channels per frame (``n_mels``).
        sample_rate: unused; part of every net's signature.
        channels: width of the stem and the blocks (the paper's is wider; this one fits a CPU).
        scale: Res2Net groups per block (``channels`` must divide by it).
        dilations: one SE-Res2Net block per dilation.
        kernel_size: taps of the blocks' Res2Net convolutions.
        se_channels: bottleneck of the squeeze-excitation gates.
        attention_channels: hidden width of the attentive pooling's scores.
        embedding_dim: size of the embedding before the classifier.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: int = 256,
        scale: int = 8,
        dilations: list[int] = [2, 3, 4],  # noqa: B006 - read-only literal
        kernel_size: int = 3,
        se_channels: int = 64,
        attention_channels: int = 64,
        embedding_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes("ECAPA", channels=channels, scale=scale, dilations=list(dilations),
                    kernel_size=kernel_size, se_channels=se_channels,
                    attention_channels=attention_channels, embedding_dim=embedding_dim,
                    n_classes=n_classes)  # fmt: skip
        check_fraction("ECAPA", "dropout", dropout)
        if not dilations:
            raise SERError("ECAPA: dilations needs at least one block")
        if channels % scale:
            raise SERError(f"ECAPA: channels={channels} must be a multiple of scale={scale}")
        self.stem = TDNNBlock(n_features, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, scale, kernel_size, d, se_channels) for d in dilations
        )
        aggregated = channels * len(dilations)
        self.aggregate = TDNNBlock(aggregated, aggregated)
        self.pool = AttentivePool(aggregated, attention_channels, channel_wise=True, context=True)
        self.pool_norm = nn.BatchNorm1d(2 * aggregated)
        self.embedding = nn.Sequential(
            nn.Linear(2 * aggregated, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full(x.shape[:1], x.shape[-1], device=x.device)
        lengths = lengths.clamp(min=1, max=x.shape[-1])
        x = self.stem(mask_padding(x, lengths), lengths)  # (B, C, F)
        outputs = []
        for block in self.blocks:
            x = block(x, lengths)  # (B, C, F)
            outputs.append(x)
        x = self.aggregate(torch.cat(outputs, dim=1), lengths)  # (B, C * len(dilations), F)
        x = self.pool_norm(self.pool(x, lengths))  # (B, 2 * C * len(dilations))
        return self.classifier(self.embedding(x))  # (B, n_classes)
