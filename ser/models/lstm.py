"""Recurrent nets over frame features: the stacked LSTM of seed S3 and the shared LSTM summary."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ser.errors import SERError, check_fraction, check_sizes
from ser.models.layers import RunningNorm, pack, packed_dropout, unpack
from ser.models.pooling import mean_std_pool

Pool = Literal["last", "mean_std"]


class LSTMSummary(nn.Module):
    """Stacked LSTMs over the valid frames (packed sequences), summarised per clip.

    Args:
        n_inputs: channels per frame.
        hidden_sizes: hidden units of each LSTM layer, bottom first.
        bidirectional: run each layer both ways.
        dropout: dropout on each layer's input frames.
        pool: ``last``: the final hidden state (of both directions); ``mean_std``: mean and std of
            the top layer's outputs over the valid frames.

    Shapes: ``(B, n_inputs, F), (B,) -> (B, out_features)``.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden_sizes: list[int],
        bidirectional: bool = False,
        dropout: float = 0.0,
        pool: Pool = "last",
    ) -> None:
        super().__init__()
        if not hidden_sizes:
            raise SERError("hidden_sizes needs at least one layer")
        if pool not in ("last", "mean_std"):
            raise SERError(f"pool={pool!r}: choose last or mean_std")
        directions = 2 if bidirectional else 1
        sizes = [n_inputs] + [h * directions for h in hidden_sizes]
        self.lstms = nn.ModuleList(
            nn.LSTM(n_in, h, batch_first=True, bidirectional=bidirectional)
            for n_in, h in zip(sizes[:-1], hidden_sizes, strict=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.pool = pool
        self.out_features = sizes[-1] * (2 if pool == "mean_std" else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack(x, lengths)
        for lstm in self.lstms:
            packed, (hidden, _) = lstm(packed_dropout(packed, self.dropout))
        if self.pool == "last":
            # hidden: (directions, B, H), already in the batch's order; forward's last valid
            # frame and backward's first frame
            return hidden.transpose(0, 1).reshape(x.shape[0], -1)  # (B, directions * H)
        out = unpack(packed, x.shape[-1])  # (B, directions * H, F)
        return mean_std_pool(out, lengths.clamp(min=1, max=x.shape[-1]))


class StackedLSTM(nn.Module):
    """Seed S3's LSTM: frame features -> LSTM(64) -> LSTM(32) -> dense(20) -> classes.

    Features are standardised with running statistics of the training frames (S3's dataset mean and
    std). PyTorch's LSTM has no recurrent dropout; ``dropout`` acts on each layer's input.

    Args:
        n_classes: output classes.
        n_features: channels per frame (``n_mfcc``, or a hand-crafted stack).
        sample_rate: unused; part of every net's signature.
        hidden_sizes: hidden units of each LSTM layer, bottom first.
        dense: units of the hidden dense layer (0: none).
        bidirectional: bidirectional LSTMs.
        pool: ``last`` hidden state or ``mean_std`` of the outputs over the valid frames.
        dropout: dropout on the LSTM inputs and before the classifier.
        stack: consecutive frames concatenated into one LSTM step (a frame-rate reduction, as
            in pyramidal LSTMs); 1 keeps S3's one step per frame.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        hidden_sizes: list[int] = [64, 32],  # noqa: B006 - read-only literal
        dense: int = 20,
        bidirectional: bool = False,
        pool: Pool = "last",
        dropout: float = 0.1,
        stack: int = 1,
    ) -> None:
        super().__init__()
        check_sizes("StackedLSTM", hidden_sizes=list(hidden_sizes), stack=stack)
        check_fraction("StackedLSTM", "dropout", dropout)
        if dense < 0:
            raise SERError(f"StackedLSTM: dense={dense} must be >= 0 (0: no dense layer)")
        self.stack = stack
        self.norm = RunningNorm(n_features)
        self.lstm = LSTMSummary(n_features * stack, hidden_sizes, bidirectional, dropout, pool)
        head: list[nn.Module] = [nn.Dropout(dropout)]
        n_in = self.lstm.out_features
        if dense:
            head += [nn.Linear(n_in, dense), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            n_in = dense
        self.head = nn.Sequential(*head, nn.Linear(n_in, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
        x = self.norm(x, lengths)  # (B, n_features, F), zero beyond each clip
        if self.stack > 1:
            x, lengths = stack_frames(x, lengths, self.stack)  # (B, stack * n_features, F / stack)
        return self.head(self.lstm(x, lengths))  # (B, n_classes)


def stack_frames(
    x: torch.Tensor, lengths: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each run of ``k`` consecutive frames: ``(B, C, F) -> (B, k * C, ceil(F / k))``.

    Step ``j`` holds frames ``jk .. jk + k - 1`` (zero past the end); a clip of ``n`` valid frames
    keeps ``ceil(n / k)`` steps.
    """
    b, c, f = x.shape
    steps = -(-f // k)
    x = nn.functional.pad(x, (0, steps * k - f)).view(b, c, steps, k)
    x = x.permute(0, 3, 1, 2).reshape(b, k * c, steps)  # channel i * C + c: frame i of the run
    return x, torch.div(lengths + k - 1, k, rounding_mode="floor")
