import pytest

from ser.data.emotions import canonical, resolve_classes
from ser.data.splits import random_split, speaker_split
from ser.errors import SERError

SPEAKERS = [f"{a:02d}" for a in range(1, 25) for _ in range(10)]


@pytest.mark.parametrize("fold", range(6))
def test_speaker_folds_are_disjoint_and_cover(fold):
    split = speaker_split(SPEAKERS, fold=fold, n_folds=6)
    groups = {stage: {SPEAKERS[i] for i in idx} for stage, idx in split.items()}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert len(groups["test"]) == 4 and len(groups["val"]) == 4
    assert sum(len(i) for i in split.values()) == len(SPEAKERS)


def test_folds_rotate_test_speakers():
    tests = [
        frozenset(SPEAKERS[i] for i in speaker_split(SPEAKERS, fold=f)["test"]) for f in range(6)
    ]
    assert len(set(tests)) == 6 and set().union(*tests) == set(SPEAKERS)


def test_explicit_speakers():
    split = speaker_split(SPEAKERS, test_speakers=["19", "20"], val_speakers=["15"])
    assert {SPEAKERS[i] for i in split["test"]} == {"19", "20"}
    assert {SPEAKERS[i] for i in split["val"]} == {"15"}
    with pytest.raises(SERError, match="not speakers"):
        speaker_split(SPEAKERS, test_speakers=["99"], val_speakers=["15"])
    with pytest.raises(SERError, match="both"):
        speaker_split(SPEAKERS, test_speakers=["15"], val_speakers=["15"])


def test_random_split_is_seeded_and_stratified():
    labels = [i % 4 for i in range(400)]
    a = random_split(labels, test_ratio=0.3, val_ratio=0.05, seed=42)
    b = random_split(labels, test_ratio=0.3, val_ratio=0.05, seed=42)
    c = random_split(labels, test_ratio=0.3, val_ratio=0.05, seed=1)
    assert a == b and a != c
    assert len(a["test"]) == 120 and len(a["val"]) == 14 and len(a["train"]) == 266
    assert sorted(labels[i] for i in a["test"]).count(0) == 30
    with pytest.raises(SERError, match="test_ratio"):
        random_split(labels, test_ratio=1.5, val_ratio=0.05, seed=0)


def test_emotion_vocabulary():
    assert canonical("ANG") == canonical("anger") == canonical("Angry") == "angry"
    assert canonical("ps") == "surprised"
    assert canonical("Langeweile") == canonical("boredom") == "bored"
    with pytest.raises(SERError, match="unknown emotion"):
        canonical("contempt")


def test_resolve_classes_subset_and_merge():
    corpus = ("neutral", "calm", "happy", "sad", "angry")
    classes, mapping = resolve_classes(corpus, ["angry", "calm", "happy", "sad"], None)
    assert classes == ["angry", "calm", "happy", "sad"] and "neutral" not in mapping
    classes, mapping = resolve_classes(corpus, None, {"calm": "neutral"})
    assert classes == ["neutral", "happy", "sad", "angry"] and mapping["calm"] == "neutral"
    with pytest.raises(SERError, match="not in this corpus"):
        resolve_classes(corpus, ["fearful"], None)
