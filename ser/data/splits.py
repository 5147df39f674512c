"""Train/val/test splits: speaker-independent by default, stratified random on request."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ser.errors import SERError

Split = dict[str, list[int]]  # stage ("train" / "val" / "test") -> clip indices


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
    from sklearn.model_selection import train_test_split

    for name, ratio in (("test_ratio", test_ratio), ("val_ratio", val_ratio)):
        if not 0.0 < ratio < 1.0:
            raise SERError(f"{name}={ratio} must be between 0 and 1")
    index = np.arange(len(labels))
    labels = np.asarray(labels)
    rest, test = train_test_split(index, test_size=test_ratio, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_ratio, stratify=labels[rest], random_state=seed
    )
    return {
        "train": sorted(train.tolist()),
        "val": sorted(val.tolist()),
        "test": sorted(test.tolist()),
    }
