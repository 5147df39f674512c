import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ser.data.emotions import EMOTIONS, canonical, resolve_classes, restrict_to_classes
from ser.data.splits import SplitSpec, make_split, random_split, speaker_folds, speaker_split
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


def spelled(name: str, how: int) -> str:
    """``name`` as a corpus or a user may write it: upper-cased, capitalised, padded."""
    return [name, name.upper(), name.capitalize(), f" {name} "][how]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_merged_and_chosen_labels_land_in_exactly_one_listed_class(data):
    """Whatever a corpus's emotions, the merges (written in any case) and the chosen classes:
    every emotion kept has exactly one class, a merged emotion its target's, an unmerged one its
    own; every class is listed once and has an emotion; a model's label space keeps its order."""
    corpus = tuple(data.draw(st.lists(st.sampled_from(EMOTIONS), min_size=2, unique=True)))
    sources = data.draw(st.lists(st.sampled_from(corpus), unique=True, max_size=len(corpus) - 1))
    targets = [e for e in corpus if e not in sources]  # no chains: a target is not merged away
    merge = {s: data.draw(st.sampled_from(targets)) for s in sources}
    written = {spelled(s, data.draw(st.integers(0, 3))): spelled(t, data.draw(st.integers(0, 3)))
               for s, t in merge.items()}  # fmt: skip
    classes, mapping = resolve_classes(corpus, None, written)
    assert set(mapping) == set(corpus)  # nothing dropped without being asked
    assert all(mapping[e] == merge.get(e, e) for e in corpus)
    assert sorted(classes) == sorted(set(targets)) and len(set(classes)) == len(classes)
    chosen = data.draw(st.lists(st.sampled_from(classes), unique=True))
    if len(chosen) < 2:
        with pytest.raises(SERError):
            resolve_classes(corpus, chosen, written)
        return
    classes, kept = resolve_classes(corpus, [c.upper() for c in chosen], written)
    assert classes == chosen  # the user's order
    assert kept == {e: c for e, c in mapping.items() if c in chosen}
    assert set(kept.values()) == set(chosen)  # every class has an emotion
    target = data.draw(st.permutations([*chosen, *data.draw(st.lists(st.sampled_from(EMOTIONS)))]))
    target = list(dict.fromkeys(target))
    restricted, shared = restrict_to_classes(kept, classes, target)
    assert shared == [c for c in target if c in chosen]  # the model's order
    assert restricted == {e: c for e, c in kept.items() if c in shared}


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


# Tests written against the survivors of `python benchmarks/mutation.py splits` (docs/testing.md).


def held_per_class(labels: list[int], held: list[int]) -> dict[int, int]:
    return {c: sum(labels[i] == c for i in held) for c in set(labels)}


def test_random_split_holds_out_the_same_share_of_every_class():
    # Ten classes of four clips, half held out for test, then half the rest for validation:
    # stratified, each class gives two test clips and one validation clip (as many validation
    # clips as classes: the smallest share that can still be stratified).
    labels = [c for c in range(10) for _ in range(4)]
    for seed in range(5):
        split = random_split(labels, test_ratio=0.5, val_ratio=0.5, seed=seed)
        assert held_per_class(labels, split["test"]) == dict.fromkeys(range(10), 2)
        assert held_per_class(labels, split["val"]) == dict.fromkeys(range(10), 1)
        assert held_per_class(labels, split["train"]) == dict.fromkeys(range(10), 1)


def test_carved_validation_is_stratified_and_seeded():
    # speaker (val_speakers: []), loso and predefined carve validation from the training clips
    speakers = [f"{s}" for s in range(4) for _ in range(20)]
    labels = [c for _ in range(8) for c in range(10)]  # each speaker: two clips of each class
    for kind, stages in (("speaker", [None] * 80), ("loso", [None] * 80),
                         ("predefined", ["train"] * 60 + ["test"] * 20)):  # fmt: skip
        splits = [
            make_split(
                kind,
                speakers,
                labels,
                stages,
                test_speakers=["3"],
                val_speakers=[],
                val_ratio=1 / 6,
                seed=seed,
            )  # fmt: skip
            for seed in (0, 0, 1)
        ]
        assert splits[0] == splits[1] and splits[0]["val"] != splits[2]["val"], kind
        assert held_per_class(labels, splits[0]["val"]) == dict.fromkeys(range(10), 1), kind


def test_a_share_too_small_or_a_single_clip_class_is_split_unstratified():
    few = random_split([c for c in range(4) for _ in range(5)], 0.1, 0.1, seed=0)  # 2 < 4 classes
    assert len(few["test"]) == 2 and sum(map(len, few.values())) == 20
    lonely = random_split([0] * 10 + [1] * 10 + [2], 0.3, 0.1, seed=0)  # class 2: one clip
    assert sorted(i for idx in lonely.values() for i in idx) == list(range(21))


def test_make_split_and_split_spec_pass_every_setting_on():
    labels = [i % 4 for i in range(len(SPEAKERS))]
    stages = ["train"] * 200 + ["test"] * 40
    settings = [
        {"protocol": "random", "test_ratio": 0.2, "val_ratio": 0.1, "seed": 3},
        {"protocol": "predefined", "val_ratio": 0.1, "seed": 3},
        {"protocol": "speaker", "fold": 2, "n_folds": 4},
        {"protocol": "speaker", "test_speakers": ["01"], "val_speakers": ["02", "03"]},
        {"protocol": "speaker", "test_speakers": ["01"], "val_speakers": [], "val_ratio": 0.2},
    ]
    for kw in settings:
        kind = kw["protocol"]
        args = {k: v for k, v in kw.items() if k != "protocol"}
        split = SplitSpec(**kw).apply(SPEAKERS, labels, stages)
        assert split == make_split(kind, SPEAKERS, labels, stages, **args), kw
        assert split != SplitSpec(protocol=kind).apply(SPEAKERS, labels, stages), kw
    assert random_split(labels, 0.2, 0.1, 3) == make_split("random", SPEAKERS, labels, stages,
                                                            test_ratio=0.2, val_ratio=0.1, seed=3)  # fmt: skip
    for kind in ("speaker", "random", "predefined", "loso"):  # one set of defaults: SplitSpec's
        assert make_split(kind, SPEAKERS, labels, stages) == SplitSpec(protocol=kind).apply(
            SPEAKERS, labels, stages
        )
    seven = list("abcdefg")  # 6 folds: 2, 1, 1, 1, 1, 1 speakers; 7 folds would be 1 each
    assert make_split("speaker", seven, [0] * 7, [None] * 7) == SplitSpec().apply(
        seven, [0] * 7, [None] * 7
    )
    assert speaker_split(seven)["test"] == [0, 1]
    first_fold = {SPEAKERS[i] for i in speaker_split(SPEAKERS)["test"]}
    assert first_fold == {"01", "02", "03", "04"}  # fold 0 of 6 by default


def test_given_test_speakers_and_the_default_validation_fold():
    split = speaker_split(SPEAKERS, test_speakers=["03"])
    assert {SPEAKERS[i] for i in split["test"]} == {"03"}
    assert {SPEAKERS[i] for i in split["val"]} == {"05", "06", "07", "08"}  # fold 1: after fold 0
    folds = speaker_folds(SPEAKERS, 6)
    for fold in range(6):  # validation is the fold after the test fold, wrapping round
        split = speaker_split(SPEAKERS, fold=fold, n_folds=6)
        assert {SPEAKERS[i] for i in split["val"]} == set(folds[(fold + 1) % 6])


def test_two_speakers_are_enough_for_leave_one_speaker_out():
    speakers, labels = ["a"] * 10 + ["b"] * 10, [0, 1] * 10
    split = make_split("loso", speakers, labels, [None] * 20, fold=1)
    assert split["test"] == list(range(10, 20)) and len(split["val"]) == 1
    assert speaker_folds(speakers, 2) == [["a"], ["b"]]


def test_split_errors_name_what_is_wrong():
    with pytest.raises(SERError, match=r"n_folds=1 does not fit 24 speakers; use 2\.\.24"):
        speaker_folds(SPEAKERS, 1)
    with pytest.raises(SERError, match=r"fold=6 is outside 0\.\.5"):
        speaker_split(SPEAKERS, fold=6, n_folds=6)
    with pytest.raises(SERError, match=r"^val_speakers \['99'\] are not"):
        speaker_split(SPEAKERS, test_speakers=["01"], val_speakers=["99"])
    with pytest.raises(SERError, match=r"^test_speakers \['99'\] are not"):
        speaker_split(SPEAKERS, test_speakers=["99"], val_speakers=["01"])
    with pytest.raises(SERError, match=r"speakers \['15'\] are in both"):
        speaker_split(SPEAKERS, test_speakers=["15", "16"], val_speakers=["15"])
    with pytest.raises(SERError, match="no speaker is left for training"):
        speaker_split(["a", "b"], test_speakers=["a"], val_speakers=["b"])
    for ratio in (0.0, 1.0):
        with pytest.raises(SERError, match=rf"^test_ratio={ratio} must be between 0 and 1"):
            random_split([0, 1] * 10, test_ratio=ratio, val_ratio=0.1, seed=0)
        with pytest.raises(SERError, match=rf"^val_ratio={ratio} must be between 0 and 1"):
            random_split([0, 1] * 10, test_ratio=0.1, val_ratio=ratio, seed=0)
    with pytest.raises(SERError, match="too few clips"):  # one training clip: no validation
        make_split("loso", ["a", "b"], [0, 1], [None, None])
    for stages, missing in ((["train"] * 4, "test"), (["test"] * 4, "train")):
        with pytest.raises(SERError, match=f"the predefined split has no {missing} clips"):
            make_split("predefined", ["x"] * 4, [0, 1] * 2, stages)


# Properties over generated corpora (hypothesis): whatever the speakers, classes and settings.

corpora = st.lists(
    st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 3)), min_size=2, max_size=60
).filter(lambda clips: len({s for s, _ in clips}) >= 2)


@settings(max_examples=60, deadline=None)
@given(clips=corpora, data=st.data())
def test_speaker_split_property(clips: list[tuple[str, int]], data: st.DataObject):
    speakers, labels = [s for s, _ in clips], [c for _, c in clips]
    n_folds = data.draw(st.integers(2, len(set(speakers))), label="n_folds")
    fold = data.draw(st.integers(0, n_folds - 1), label="fold")
    kind = data.draw(st.sampled_from(["speaker", "loso"]), label="kind")
    try:
        split = make_split(kind, speakers, labels, [None] * len(clips), fold=fold, n_folds=n_folds)
    except SERError as err:  # every speaker held out, or too few training clips to carve from
        assert "no speaker is left" in str(err) or "too few clips" in str(err)
        return
    indices = sorted(i for idx in split.values() for i in idx)
    assert indices == list(range(len(clips)))  # every clip in exactly one stage
    held = {stage: {speakers[i] for i in split[stage]} for stage in ("test", "val")}
    assert not held["test"] & ({speakers[i] for i in split["train"]} | held["val"])
    if kind == "speaker":
        assert not held["val"] & {speakers[i] for i in split["train"]}
    again = make_split(kind, speakers, labels, [None] * len(clips), fold=fold, n_folds=n_folds)
    assert again == split  # deterministic


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=4, max_size=80),
    test_ratio=st.floats(0.05, 0.5),
    val_ratio=st.floats(0.05, 0.5),
    seed=st.integers(0, 2**16),
)
def test_random_split_property(labels: list[int], test_ratio: float, val_ratio: float, seed: int):
    try:
        split = random_split(labels, test_ratio, val_ratio, seed)
    except SERError as err:  # a share that rounds to every clip
        assert "too few clips" in str(err)
        return
    assert sorted(i for idx in split.values() for i in idx) == list(range(len(labels)))
    assert len(split["test"]) == math.ceil(test_ratio * len(labels))
    assert split == random_split(labels, test_ratio, val_ratio, seed)
