"""Clips, the in-memory dataset, the training order and collate.

A batch is a dict (the one place it is documented):

- ``waveform``: ``(B, T)`` float32 mono audio at ``sample_rate``, zero-padded to the longest clip
- ``lengths``: ``(B,)`` int64 valid samples per clip
- ``label``: ``(B,)`` int64 class index into ``class_names``
- ``speaker``: list of B speaker ids; ``path``: list of B file paths
- ``corpus``: list of B corpus names (:class:`ser.data.Pooled`; empty strings for one corpus)

On the device, the DataModule's :class:`~ser.transforms.FeaturePipeline` adds

- ``features``: ``(B, n_features, F)`` front-end output (``F`` frames, or samples for ``Waveform``)
- ``feature_lengths``: ``(B,)`` int64 valid frames per clip
- ``target``: ``(B, n_classes)`` float soft targets, only while training with mixup (``label``
  stays the hard label for the metrics)

Scoring whole recordings (``ser test --score recordings``), a batch is one recording's windows:
``waveform`` ``(n_windows, window)`` with one ``label``/``speaker``/``path`` entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

#: The label of a training clip without one (``--data.unlabeled``): PyTorch's ``ignore_index``,
#: so cross-entropy leaves it out; a task that learns from such clips does so without a label.
UNLABELED = -100
#: The corpus (and speaker prefix) of those clips.
UNLABELED_CORPUS = "unlabeled"


@dataclass(frozen=True)
class Clip:
    """One recording of a corpus: where it is, its canonical emotion, its speaker, the stage
    (``train``/``val``/``test``) the corpus itself assigns it to, if it has a predefined split, and
    the corpus's name in a pool of corpora."""

    path: Path
    emotion: str
    speaker: str
    stage: str | None = None
    corpus: str | None = None


class ClipDataset(Dataset):
    """Decoded clips held in memory; random crop while training, centre crop otherwise.

    Args:
        waves: one ``(n_samples,)`` waveform per clip.
        labels: class index per clip.
        clips: the clips the waveforms came from.
        max_samples: longer clips are cropped to this many samples (``None``: whole clips).
        train: crop at random (``True``) or deterministically from the centre.
        crop_positions: while training, a crop starts at one of this many evenly spaced offsets
            of its clip, drawn at random (first sample to last possible; 1: the centre), so that
            each clip has a fixed, finite set of crops; ``None``: at any sample.
    """

    def __init__(
        self,
        waves: list[torch.Tensor],
        labels: list[int],
        clips: list[Clip],
        max_samples: int | None,
        train: bool,
        crop_positions: int | None = None,
    ) -> None:
        self.waves, self.labels, self.clips = waves, labels, clips
        self.max_samples, self.train = max_samples, train
        self.crop_positions = crop_positions

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Clip ``key``, or ``(index, crop seed)`` as :class:`EpochSampler` yields while training."""
        i, crop_seed = key if isinstance(key, tuple) else (key, None)
        wave = self.waves[i]
        excess = 0 if self.max_samples is None else wave.numel() - self.max_samples
        if excess > 0:
            if self.train:
                generator = None if crop_seed is None else torch.Generator().manual_seed(crop_seed)
                n = excess + 1 if self.crop_positions is None else self.crop_positions
                start = self.crop_start(int(torch.randint(n, (), generator=generator)), excess)
            else:
                start = excess // 2
            wave = wave[start : start + self.max_samples]
        clip = self.clips[i]
        return {
            "waveform": wave,
            "label": self.labels[i],
            "speaker": clip.speaker,
            "path": str(clip.path),
            "corpus": clip.corpus or "",
        }

    def crop_start(self, position: int, excess: int) -> int:
        """First sample of training crop ``position`` of a clip ``excess`` samples too long."""
        if self.crop_positions is None:
            return position
        if self.crop_positions == 1:
            return excess // 2
        return round(position * excess / (self.crop_positions - 1))

    def training_crops(self, i: int) -> list[torch.Tensor]:
        """Every crop of clip ``i`` that training can draw, with ``crop_positions`` set."""
        if self.crop_positions is None:
            raise ValueError("training_crops needs crop_positions")
        wave = self.waves[i]
        excess = 0 if self.max_samples is None else wave.numel() - self.max_samples
        if excess <= 0:
            return [wave]
        starts = sorted({self.crop_start(k, excess) for k in range(self.crop_positions)})
        return [wave[s : s + self.max_samples] for s in starts]


class EpochSampler(Sampler):
    """Shuffled training order and per-clip crop seeds that depend only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, also after resuming from a checkpoint, so
    a resumed run replays the order and crops of the uninterrupted one; the global random
    generators are left to the model (dropout, augmentation). With several processes, rank ``r``
    of ``W`` takes every ``W``-th position of the same order, the order wrapped round so that every
    rank gets ``ceil(n / W)`` clips (distributed training needs equal step counts); together the
    ranks cover the whole split, and a clip's crop does not depend on ``W``.

    With ``weights`` (one per clip), an epoch is ``n_clips`` draws with replacement, clip ``i``
    drawn with probability proportional to ``weights[i]`` (a pool's corpus
    shares, :func:`class_balanced_weights`: every class equally often); the draws depend on ``(seed, epoch)`` alone and are sharded the same way.

    Args:
        n_clips: size of the dataset.
        seed: base seed (the run's seed).
        rank: this process's rank.
        world_size: number of processes.
        weights: ``(n_clips,)`` sampling weights (``None``: each clip once per epoch).
    """

    def __init__(
        self,
        n_clips: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.n_clips, self.seed, self.epoch = n_clips, seed, 0
        self.rank, self.world_size = rank, world_size
        if weights is not None and len(weights) != n_clips:
            raise ValueError(f"{len(weights)} weights for {n_clips} clips")
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n_clips / self.world_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n_clips, generator=generator).tolist()
        else:
            order = torch.multinomial(
                self.weights, self.n_clips, replacement=True, generator=generator
            ).tolist()
        crop_seeds = torch.randint(2**62, (self.n_clips,), generator=generator).tolist()
        keys = list(zip(order, crop_seeds, strict=True))
        keys += keys[: len(self) * self.world_size - self.n_clips]  # wrapped round
        yield from keys[self.rank :: self.world_size]


def class_balanced_weights(labels: list[int]) -> torch.Tensor:
    """A sampling weight per clip, ``1 / (count of its class)``: each class drawn equally often."""
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(labels_t).double()  # (n_classes,)
    return 1.0 / counts[labels_t]


class ShardSampler(Sampler):
    """Rank ``r`` of ``W`` takes clips ``r, r + W, r + 2W...`` in order, nothing repeated: with
    several processes, validation and test count every clip exactly once.

    Args:
        n_clips: size of the dataset.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, n_clips: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, n_clips, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        yield from self.indices


def collate(items: list[dict]) -> dict:
    """Zero-pad the waveforms of ``items`` to the longest one and stack them into a batch."""
    lengths = torch.tensor([it["waveform"].numel() for it in items])
    waveform = torch.zeros(len(items), int(lengths.max()))  # (B, T)
    for row, it in zip(waveform, items, strict=True):
        row[: it["waveform"].numel()] = it["waveform"]
    return {
        "waveform": waveform,
        "lengths": lengths,
        "label": torch.tensor([it["label"] for it in items]),
        "speaker": [it["speaker"] for it in items],
        "path": [it["path"] for it in items],
        "corpus": [it.get("corpus", "") for it in items],
    }
