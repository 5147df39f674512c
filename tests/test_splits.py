import pytest

from ser.data.emotions import canonical, resolve_classes
from ser.data.splits import make_split, random_split, speaker_split
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


def test_fold_loop_tests_every_speaker_exactly_once():
    tested = [SPEAKERS[i] for f in range(6) for i in speaker_split(SPEAKERS, fold=f)["test"]]
    assert sorted(set(tested)) == sorted(set(SPEAKERS)) and len(tested) == len(SPEAKERS)


def test_loso_has_one_test_speaker_per_fold_and_no_overlap():
    labels = [i % 4 for i in range(len(SPEAKERS))]
    seen = []
    for fold in range(24):
        split = make_split("loso", SPEAKERS, labels, [None] * len(SPEAKERS), fold=fold)
        groups = {stage: {SPEAKERS[i] for i in idx} for stage, idx in split.items()}
        assert len(groups["test"]) == 1 and not groups["train"] & groups["test"]
        # validation: a share of the training speakers' clips, so every other speaker trains
        assert (
            groups["train"] == set(SPEAKERS) - groups["test"] and groups["val"] <= groups["train"]
        )
        assert split["val"] and not set(split["val"]) & set(split["train"])
        seen += groups["test"]
    assert sorted(seen) == sorted(set(SPEAKERS))
    named = make_split("loso", SPEAKERS, labels, [None] * len(SPEAKERS), val_speakers=["02"])
    assert {SPEAKERS[i] for i in named["val"]} == {"02"}  # named speakers are still held out


def test_empty_val_speakers_carves_validation_from_training_speakers():
    labels = [i % 4 for i in range(len(SPEAKERS))]
    split = make_split("speaker", SPEAKERS, labels, [None] * len(SPEAKERS),
                       test_speakers=["01"], val_speakers=[], val_ratio=0.1)  # fmt: skip
    val = {SPEAKERS[i] for i in split["val"]}
    assert "01" not in val and len(split["val"]) == 23  # ceil(0.1 * 230)
    assert not set(split["val"]) & set(split["train"])


def test_random_split_same_seed_same_split_other_seed_other_split():
    labels = [i % 6 for i in range(600)]
    a, b = random_split(labels, 0.3, 0.05, 42), random_split(labels, 0.3, 0.05, 42)
    assert a == b and a != random_split(labels, 0.3, 0.05, 7)


def test_predefined_split_and_its_errors():
    stages = ["train"] * 8 + ["test"] * 2
    split = make_split("predefined", ["x"] * 10, [0, 1] * 5, stages, val_ratio=0.25)
    assert split["test"] == [8, 9] and len(split["val"]) == 2 and len(split["train"]) == 6
    with pytest.raises(SERError, match="predefined"):
        make_split("predefined", ["x"] * 10, [0, 1] * 5, [None] * 10)
    with pytest.raises(SERError, match="speaker labels"):
        make_split("speaker", ["unknown"] * 10, [0, 1] * 5, [None] * 10)
    assert make_split("all", ["x"] * 3, [0, 1, 0], [None] * 3) == {
        "train": [], "val": [], "test": [0, 1, 2]}  # fmt: skip
