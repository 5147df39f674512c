"""Feature normalisation by recording, speaker or corpus: each feature bin shifted to mean 0 and
scaled to standard deviation 1 over a group's valid frames (cepstral mean and variance
normalisation, CMVN), which removes what a microphone, a room or a voice adds to every frame
alike - the classic cross-corpus remedy (Schuller et al. 2010; Kaya & Karpov 2018).

- ``recording``: over each clip's (or window's) own frames; needs nothing but the clip.
- ``speaker``: over all of a speaker's clips (the data computes the statistics at setup, from
  every stage: a test speaker's own recordings, without their labels); an emotion then shows as
  a departure from that speaker's usual voice.
- ``corpus``: over all of a corpus's clips (each corpus of a pool on its own).

A clip whose group has no statistics (``ser predict`` on recordings not grouped by speaker) is
normalised by the population's: those of every clip the statistics were computed from (stored in
the checkpoint), the nearest guess at an unknown speaker's. A clip's own statistics would remove
what a speaker-normalised model reads (an angry clip's level above its speaker's usual), and a
front-end of few frames (one per 1.6-s window: :class:`ser.transforms.VoiceEmbedding`) gives too
few of them to estimate anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ser.errors import SERError

Level = Literal["recording", "speaker", "corpus"]
LEVELS = ("recording", "speaker", "corpus")
#: Added to the variance before the square root: a bin without variation is left at 0.
EPS = 1e-5


def between(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` ``(B, ...)`` with size-1 axes inserted after the first so that it broadcasts over
    ``x`` ``(B, ..., C, F)`` (unsqueezed, not viewed with sizes: a traced export keeps any batch)."""
    for _ in range(x.dim() - t.dim()):
        t = t.unsqueeze(1)
    return t


def frame_moments(
    x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per clip, the sum and sum of squares of each feature bin over the valid frames, and the
    frame count: ``(B, ..., C, F), (B,) -> (B, ..., C), (B, ..., C), (B,)``."""
    valid = torch.arange(x.shape[-1], device=x.device) < lengths[:, None]  # (B, F)
    x = x * between(valid, x).to(x.dtype)  # (B, 1, ..., F)
    return x.sum(-1), x.square().sum(-1), lengths.clamp(min=1).to(x.dtype)


class Normalization(nn.Module):
    """Normalise each feature bin by its mean and standard deviation over a group of frames.

    Args:
        level: whose frames give the statistics: ``recording``, ``speaker`` or ``corpus``.
        scale: divide by the standard deviation too (``False``: subtract the mean only).
        population: ``{"mean", "std"}`` (nested lists, ``(..., C)``) of all clips, for clips of
            unknown groups (set by :meth:`fit`; a checkpoint stores it).

    Shapes: ``(B, ..., C, F), (B,) -> (B, ..., C, F)`` (padding stays zero).
    """

    def __init__(
        self, level: Level = "recording", scale: bool = True, population: dict | None = None
    ) -> None:
        super().__init__()
        if level not in LEVELS:
            raise SERError(f"--data.normalization {level!r}: one of {', '.join(LEVELS)}, or null")
        self.level, self.scale = level, bool(scale)
        #: group (a speaker or corpus name) -> (mean, std), each ``(..., C)``: :meth:`fit`.
        self.stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        #: (mean, std) of all clips, for clips whose group has no statistics (else ``None``).
        self.population = None if population is None else population_of(population)
        #: The group of every clip given without groups (``ser predict --group-by folder`` sets
        #: it to a folder's statistics, in ``stats``); ``None``: each clip on its own.
        self.shared_group: str | None = None

    def groups(self, batch: dict) -> list[str] | None:
        """Each example's group in ``batch`` (its speaker or corpus); ``None`` per recording."""
        if self.level == "recording":
            return None
        return list(batch["speaker" if self.level == "speaker" else "corpus"])

    @torch.no_grad()
    def fit(self, batches, population: bool = True) -> None:
        """The statistics of each group from ``(features, lengths, groups)`` batches of whole
        clips, replacing any before; with ``population``, those of all the clips too (else the
        population statistics stay as they are: one folder's at inference)."""
        sums: dict[str | None, list] = {}  # None: every clip, the population
        for features, lengths, groups in batches:
            total, squares, count = frame_moments(features.double(), lengths)
            for i, group in enumerate(groups):
                for key in (group, None):
                    acc = sums.setdefault(key, [0.0, 0.0, 0.0])
                    acc[0], acc[1] = acc[0] + total[i], acc[1] + squares[i]
                    acc[2] = acc[2] + count[i]
        self.stats = {}
        for group, (total, squares, count) in sums.items():
            mean = total / count
            var = (squares / count - mean.square()).clamp(min=0)
            self.stats[group] = (mean.float().cpu(), (var + EPS).sqrt().float().cpu())
        everyone = self.stats.pop(None, None)
        if population:
            self.population = everyone

    def to_spec(self) -> dict:
        """Plain data that rebuilds this normalisation, its population statistics included."""
        population = None if self.population is None else {
            "mean": self.population[0].tolist(), "std": self.population[1].tolist()}  # fmt: skip
        return {"level": self.level, "scale": self.scale, "population": population}

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, groups: Sequence[str] | None = None
    ) -> torch.Tensor:
        total, squares, count = frame_moments(x, lengths)  # (B, ..., C), (B, ..., C), (B,)
        count = between(count, total)  # (B, 1, ...)
        mean = total / count  # (B, ..., C)
        std = ((squares / count - mean.square()).clamp(min=0) + EPS).sqrt()
        if groups is None and self.shared_group is not None:
            groups = [self.shared_group] * len(x)
        if groups is None and self.population is not None:  # no groups at all: the population's
            mean = self.population[0].to(x.device, x.dtype).unsqueeze(0)  # (1, ..., C)
            std = self.population[1].to(x.device, x.dtype).unsqueeze(0)
        elif groups is not None:
            stats = self.stats if self.population is None else {**self.stats, None: self.population}
            groups = [g if g in self.stats else None for g in groups]  # None: the population
            known = [i for i, g in enumerate(groups) if g in stats]
            if known:
                index = torch.tensor(known, device=x.device)
                mean = mean.index_copy(0, index, torch.stack(
                    [stats[groups[i]][0] for i in known]).to(x.device, x.dtype))  # fmt: skip
                std = std.index_copy(0, index, torch.stack(
                    [stats[groups[i]][1] for i in known]).to(x.device, x.dtype))  # fmt: skip
        out = x - mean[..., None]
        if self.scale:
            out = out / std[..., None]
        valid = torch.arange(x.shape[-1], device=x.device) < lengths[:, None]  # (B, F)
        return out * between(valid, x)


def population_of(population: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` tensors of a stored ``{"mean", "std"}``; SERError unless they are finite
    numbers of one shape with every std above zero."""
    try:
        mean = torch.tensor(population["mean"], dtype=torch.float32)
        std = torch.tensor(population["std"], dtype=torch.float32)
    except (TypeError, KeyError, ValueError, RuntimeError):
        mean = std = None
    if (
        mean is None
        or mean.shape != std.shape
        or mean.dim() == 0
        or not (
            bool(mean.isfinite().all()) and bool((std > 0).all()) and bool(std.isfinite().all())
        )
    ):
        raise SERError(
            "normalization.population must be {mean, std}: finite numbers of one shape, every "
            "std above zero (a damaged or hand-edited model file)"
        )
    return mean, std
