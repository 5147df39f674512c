"""CNN-LSTM in the two forms of Zhao, Mao & Chen 2019 ("Speech emotion recognition using deep 1D &
2D CNN LSTM networks"): local feature learning blocks (conv, batch norm, ELU, max-pool), then an
LSTM over time. Both mask the padding after every block and pack the LSTM input by length."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ser.errors import check_fraction, check_sizes
from ser.models.layers import RunningNorm, conv_lengths, mask_padding
from ser.models.lstm import LSTMSummary, Pool


def _full_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[-1], device=x.device)
    return lengths.clamp(max=x.shape[-1])


class CNNLSTM1D(nn.Module):
    """1D convolutions over frame features (MFCC, or ZCR + RMS as in seed S1), then an LSTM.

    Args:
        n_classes: output classes.
        n_features: channels per frame.
        sample_rate: unused; part of every net's signature.
        channels: output channels of each block (conv, batch norm, ELU, max-pool by ``pool``).
        kernel_size: taps of each convolution over frames.
        pool: time pooling factor of each block.
        hidden_sizes: hidden units of the stacked LSTM layers.
        bidirectional: bidirectional LSTMs.
        lstm_pool: ``last`` hidden state or ``mean_std`` of the LSTM outputs.
        dropout: dropout on the LSTM input and before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: list[int] = [64, 64, 128, 128],  # noqa: B006 - read-only literal
        kernel_size: int = 3,
        pool: int = 2,
        hidden_sizes: list[int] = [128],  # noqa: B006 - read-only literal
        bidirectional: bool = False,
        lstm_pool: Pool = "last",
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_sizes("CNNLSTM1D", channels=list(channels), kernel_size=kernel_size, pool=pool,
                    hidden_sizes=list(hidden_sizes))  # fmt: skip
        check_fraction("CNNLSTM1D", "dropout", dropout)
        self.norm = RunningNorm(n_features)
        self.pool = pool
        blocks, c_in = [], n_features
        for c_out in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                    nn.BatchNorm1d(c_out),
                    nn.ELU(inplace=True),
                )
            )
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.max_pool = nn.MaxPool1d(pool)
        self.lstm = LSTMSummary(c_in, hidden_sizes, bidirectional, dropout, lstm_pool)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.lstm.out_features, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = _full_lengths(x, lengths)
        x = self.norm(x, lengths)  # (B, n_features, F)
        for block in self.blocks:
            x = mask_padding(block(x), lengths)  # (B, C, F)
            if x.shape[-1] >= self.pool:
                x = self.max_pool(x)  # (B, C, F // pool)
                lengths = conv_lengths(lengths, self.pool, self.pool).clamp(max=x.shape[-1])
                x = mask_padding(x, lengths)  # a window straddling the end is padding too
        return self.head(self.lstm(x, lengths))  # (B, n_classes)


class CNNLSTM2D(nn.Module):
    """2D convolutions over a log-mel spectrogram, then an LSTM over time on the flattened
    (channel x frequency) maps.

    Args:
        n_classes: output classes.
        n_features: frequency bins of the input (``n_mels``).
        sample_rate: unused; part of every net's signature.
        channels: output channels of each block (3x3 conv, batch norm, ELU, 2x2 max-pool; frequency
            stops being pooled once a single bin is left).
        hidden_sizes: hidden units of the stacked LSTM layers.
        bidirectional: bidirectional LSTMs.
        lstm_pool: ``last`` hidden state or ``mean_std`` of the LSTM outputs.
        dropout: dropout on the LSTM input and before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        channels: list[int] = [32, 64, 64, 128],  # noqa: B006 - read-only literal
        hidden_sizes: list[int] = [128],  # noqa: B006 - read-only literal
        bidirectional: bool = False,
        lstm_pool: Pool = "last",
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        check_sizes("CNNLSTM2D", channels=list(channels), hidden_sizes=list(hidden_sizes))
        check_fraction("CNNLSTM2D", "dropout", dropout)
        blocks, self.freq_pools, c_in, freq = [], [], 1, n_features
        for c_out in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ELU(inplace=True),
                )
            )
            self.freq_pools.append(2 if freq >= 2 else 1)
            c_in, freq = c_out, freq // self.freq_pools[-1]
        self.blocks = nn.ModuleList(blocks)
        self.lstm = LSTMSummary(c_in * freq, hidden_sizes, bidirectional, dropout, lstm_pool)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.lstm.out_features, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = _full_lengths(x, lengths)
        x = mask_padding(x, lengths).unsqueeze(1)  # (B, 1, n_features, F)
        for block, freq_pool in zip(self.blocks, self.freq_pools, strict=True):
            x = mask_padding(block(x), lengths)  # (B, C, M, F)
            time_pool = 2 if x.shape[-1] >= 2 else 1
            x = F.max_pool2d(x, (freq_pool, time_pool))  # (B, C, M // 2, F // 2)
            lengths = conv_lengths(lengths, time_pool, time_pool).clamp(max=x.shape[-1])
            x = mask_padding(x, lengths)  # a window straddling the end is padding too
        x = x.flatten(1, 2)  # (B, C * M', F')
        return self.head(self.lstm(x, lengths))  # (B, n_classes)
