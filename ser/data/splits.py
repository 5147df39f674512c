"""Train/val/test splits: speaker-independent by default, stratified random or a corpus's own on request.

- ``speaker``: speaker folds; ``fold`` picks the test fold, so a loop over folds cross-validates
- ``loso``: leave-one-speaker-out (one fold per speaker); validation is a stratified share of the
  training speakers' clips unless ``val_speakers`` names speakers
- ``random``: stratified random with a seed (speakers shared between stages: the seeds' protocol)
- ``predefined``: the corpus's own train/(val/)test assignment, validation carved from train
- ``all``: every clip in test (evaluating a trained model on another corpus)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ser.errors import SERError

Split = dict[str, list[int]]  # stage ("train" / "val" / "test") -> clip indices
SplitName = Literal["speaker", "loso", "random", "predefined", "all"]


def speaker_folds(speakers: Sequence[str], n_folds: int) -> list[list[str]]:
    """Partition the sorted distinct speakers into ``n_folds`` contiguous groups."""
    distinct = sorted(set(speakers))
    if n_folds < 2 or n_folds > len(distinct):
        raise SERError(
            f"n_folds={n_folds} does not fit {len(distinct)} speakers; use 2..{len(distinct)}"
        )
    return [list(g) for g in np.array_split(np.array(distinct, dtype=object), n_folds)]


def speaker_split(
    speakers: Sequence[str],
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
    fold: int = 0,
    n_folds: int = 6,
) -> Split:
    """Split so that no speaker is in two stages.

    Args:
        speakers: the speaker of each clip.
        test_speakers: speakers held out for test; ``None``: fold ``fold`` of ``n_folds``.
        val_speakers: speakers held out for validation; ``None``: the fold after the test fold.
        fold: which fold is the test fold when ``test_speakers`` is not given.
        n_folds: how many speaker folds.
    """
    known = set(speakers)
    if test_speakers is None or val_speakers is None:
        folds = speaker_folds(speakers, n_folds)
        if not 0 <= fold < n_folds:
            raise SERError(f"fold={fold} is outside 0..{n_folds - 1}")
        test = set(test_speakers) if test_speakers is not None else set(folds[fold])
        val = set(val_speakers) if val_speakers is not None else set(folds[(fold + 1) % n_folds])
        val -= test
    else:
        test, val = set(test_speakers), set(val_speakers)
    for name, group in (("test_speakers", test), ("val_speakers", val)):
        unknown = sorted(group - known)
        if unknown:
            raise SERError(f"{name} {unknown} are not speakers of this corpus: {sorted(known)}")
    if test & val:
        raise SERError(f"speakers {sorted(test & val)} are in both test_speakers and val_speakers")
    split: Split = {"train": [], "val": [], "test": []}
    for i, spk in enumerate(speakers):
        stage = "test" if spk in test else "val" if spk in val else "train"
        split[stage].append(i)
    if not split["train"]:
        raise SERError("no speaker is left for training")
    return split


def random_split(labels: Sequence[int], test_ratio: float, val_ratio: float, seed: int) -> Split:
    """Stratified random split (speakers may appear in several stages: the seeds' protocol).

    ``test_ratio`` is taken from all clips, then ``val_ratio`` from what remains, as in seed S1
    (70/30, then 95/5).
    """

    for name, ratio in (("test_ratio", test_ratio), ("val_ratio", val_ratio)):
        if not 0.0 < ratio < 1.0:
            raise SERError(f"{name}={ratio} must be between 0 and 1")
    index = np.arange(len(labels))
    labels = np.asarray(labels)
    rest, test = _stratified(index, labels, test_ratio, seed)
    train, val = _stratified(rest, labels[rest], val_ratio, seed)
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _stratified(
    index: np.ndarray, labels: np.ndarray, ratio: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split ``index`` into (rest, held-out share ``ratio``), stratified by ``labels`` if it can."""
    from sklearn.model_selection import train_test_split

    counts = np.unique(labels, return_counts=True)[1]
    n_held = int(np.ceil(ratio * len(index)))
    if n_held >= len(index):  # scikit-learn's own error would not say which split
        raise SERError(
            f"cannot hold out a share of {ratio:g} of {len(index)} clip(s) and keep any: too few "
            "clips to split (e.g. a training split of one clip to carve validation from)"
        )
    stratify = labels if counts.min() >= 2 and n_held >= len(counts) else None
    rest, held = train_test_split(
        np.asarray(index), test_size=ratio, stratify=stratify, random_state=seed
    )
    return rest.tolist(), held.tolist()


def predefined_split(
    stages: Sequence[str | None], labels: Sequence[int], val_ratio: float, seed: int
) -> Split:
    """The corpus's own assignment of clips to stages; validation is carved from train if absent.

    Args:
        stages: ``"train"``, ``"val"`` or ``"test"`` for each clip (``None``: not assigned).
        labels: class index of each clip (stratifies the carved validation set).
        val_ratio: share of the training clips for validation when the corpus has no val stage.
        seed: seed of that carving.
    """
    if any(s is None for s in stages):
        raise SERError(
            "split=predefined needs a corpus with its own train/test assignment (e.g. "
            "ROOT/Train and ROOT/Test folders, or a `split` column in a manifest); this one has "
            "none: use split=speaker or split=random"
        )
    split: Split = {
        s: [i for i, st in enumerate(stages) if st == s] for s in ("train", "val", "test")
    }
    if not split["train"] or not split["test"]:
        raise SERError(
            f"the predefined split has no {'train' if not split['train'] else 'test'} clips"
        )
    if not split["val"]:
        index = np.array(split["train"])
        train, val = _stratified(index, np.asarray(labels)[index], val_ratio, seed)
        split["train"], split["val"] = sorted(train), sorted(val)
    return split


def make_split(
    kind: SplitName,
    speakers: Sequence[str],
    labels: Sequence[int],
    stages: Sequence[str | None],
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
    fold: int = 0,
    n_folds: int = 6,
    test_ratio: float = 0.3,
    val_ratio: float = 0.05,
    seed: int = 42,
) -> Split:
    """Dispatch to the split ``kind`` (see the module docstring); arguments as in those functions."""
    if kind == "random":
        return random_split(labels, test_ratio, val_ratio, seed)
    if kind == "predefined":
        return predefined_split(stages, labels, val_ratio, seed)
    if kind == "all":
        return {"train": [], "val": [], "test": list(range(len(labels)))}
    if kind == "loso":
        n_folds = len(set(speakers))
        if val_speakers is None:  # few speakers: one more held out would starve training
            val_speakers = []
    if len(set(speakers)) < 2:
        raise SERError(
            f"split={kind} needs speaker labels, but this corpus has {len(set(speakers))} "
            "speaker(s); use split=random or split=predefined, or give the speakers "
            "(a `speaker` manifest column, or speaker_pattern for a folder corpus)"
        )
    split = speaker_split(speakers, test_speakers, val_speakers, fold, n_folds)
    if not split["val"]:  # val_speakers: []: validate on a share of the training speakers' clips
        index = np.array(split["train"])
        train, val = _stratified(index, np.asarray(labels)[index], val_ratio, seed)
        split["train"], split["val"] = sorted(train), sorted(val)
    return split


@dataclass
class SplitSpec:
    """How a corpus is split into train/val/test (``--data.split.protocol``, ``--data.split.fold``...).

    Args:
        protocol: ``speaker`` (speaker folds: no speaker in two stages), ``loso`` (leave one
            speaker out: one fold per speaker), ``random`` (stratified, the seeds' protocol),
            ``predefined`` (the corpus's own train/test) or ``all`` (every clip in test).
        test_speakers: speakers held out for test (``speaker``); default: fold ``fold``.
        val_speakers: speakers held out for validation; default: the fold after the test fold
            (``speaker``), a stratified share (``val_ratio``) of the training speakers' clips
            (``loso``, and ``[]`` with ``speaker``).
        fold: test fold when ``test_speakers`` is not given; loop it over ``0..n_folds-1``
            (``speaker``) or ``0..n_speakers-1`` (``loso``) to cross-validate.
        n_folds: number of speaker folds.
        test_ratio: share of clips for test (``random``).
        val_ratio: share of the remaining clips for validation (``random``; also the share of
            train carved out for validation by a ``predefined`` split without one).
        seed: seed of the ``random`` split.
        min_clips_per_class: a test fold of fewer clips than this many per compared class
            (2 x 5 = 10 for five classes) is refused, as its UAR would say little; a validation
            fold of fewer is warned about; ``0``: neither.
    """

    protocol: SplitName = "speaker"
    test_speakers: list[str] | None = None
    val_speakers: list[str] | None = None
    fold: int = 0
    n_folds: int = 6
    test_ratio: float = 0.3
    val_ratio: float = 0.05
    seed: int = 42
    min_clips_per_class: int = 2

    def apply(
        self, speakers: Sequence[str], labels: Sequence[int], stages: Sequence[str | None]
    ) -> Split:
        """The clip indices of each stage (see :func:`make_split`)."""
        return make_split(
            self.protocol, speakers, labels, stages, self.test_speakers, self.val_speakers,
            self.fold, self.n_folds, self.test_ratio, self.val_ratio, self.seed,
        )  # fmt: skip
