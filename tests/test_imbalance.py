"""Imbalanced classes: the class-weighted loss (``--model.init_args.class_weights``) and the
class-balanced sampler (``--data.balance_classes``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ser.data import RAVDESS
from ser.data.dataset import UNLABELED, EpochSampler, class_balanced_weights
from ser.errors import SERError
from ser.models import CNN2D
from ser.tasks import EmotionClassifier
from ser.tasks.adversary import DomainAdversary
from ser.tasks.classification import balanced_class_weights


def classifier(class_weights, train_labels: list[int], **task) -> EmotionClassifier:
    """A task set up as ``ser fit`` sets it up on a training split with ``train_labels``."""
    model = EmotionClassifier(CNN2D, 3, 16, 16000, class_weights=class_weights, **task)
    model.trainer = SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"train": _Dataset(train_labels)})
    )
    model.setup("fit")
    return model


class _Dataset:
    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)


def test_balanced_weights_make_every_class_weigh_alike():
    labels = [0] * 6 + [1] * 2  # class 2 has no training clips
    weights = balanced_class_weights(labels, 3)
    assert torch.allclose(weights, torch.tensor([8 / (3 * 6), 8 / (3 * 2), 0.0]))
    counts = torch.bincount(torch.tensor(labels), minlength=3).float()
    assert torch.allclose(weights * counts, torch.tensor([8 / 3, 8 / 3, 0.0]))  # equal totals


def test_balanced_weights_of_a_single_clip_class_and_of_no_labels():
    # written against mutants of `python benchmarks/mutation.py loss` (docs/testing.md)
    weights = balanced_class_weights([0] * 6 + [1] + [-1] * 3, 3)  # -1: clips without a label
    assert torch.allclose(weights, torch.tensor([7 / (3 * 6), 7 / 3, 0.0]))
    assert torch.equal(balanced_class_weights([-1, -1], 3), torch.zeros(3))  # nothing to weigh
    assert torch.equal(balanced_class_weights([], 3), torch.zeros(3))


def test_integer_class_weights_weigh_as_floats():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    model = classifier([2, 1, 0], [])  # YAML or Python ints
    assert model.loss_weights.dtype == torch.float32
    per_clip = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(
        model.loss(logits, {"label": labels}), (2 * per_clip[0] + per_clip[1]) / 3
    )


def test_balanced_weights_need_a_training_split_only_to_train():
    # ser test / validate: no datamodule, no datasets or no training clips: no weights needed
    for trainer in (SimpleNamespace(), SimpleNamespace(datamodule=SimpleNamespace()),
                    SimpleNamespace(datamodule=SimpleNamespace(datasets={"train": _Dataset([])}))):  # fmt: skip
        model = EmotionClassifier(CNN2D, 3, 16, 16000, class_weights="balanced")
        model.trainer = trainer
        assert model.class_weight_tensor() is None
        model.setup("fit")  # e.g. a fit on plain dataloaders, without a datamodule
    one_clip = classifier("balanced", [1])  # one training clip is enough to weigh
    assert torch.equal(one_clip.loss_weights, torch.tensor([0.0, 1 / 3, 0.0]))


def test_a_model_that_learns_from_labels_only_refuses_unlabeled_training_clips():
    with pytest.raises(SERError, match="^--data.unlabeled: this model learns from labels only"):
        classifier(None, [0, UNLABELED, 1])
    model = EmotionClassifier(CNN2D, 3, 16, 16000)
    model.trainer = SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"train": _Dataset([0, UNLABELED])})
    )
    model.setup("test")  # only training refuses them
    model.learns_without_labels = True  # e.g. distillation from teachers
    model.setup("fit")


def test_setup_gives_the_adversary_the_domains_of_the_training_clips():
    clips = [SimpleNamespace(speaker=s, corpus=c) for s, c in [("a", "x"), ("b", "x"), ("c", None)]]
    for domain, labels, index in (
        ("speaker", [0, 1, 2], {"a": 0, "b": 1, "c": 2}),
        ("corpus", [0, UNLABELED, 2], {"": 0, "x": 1}),  # a corpus adversary takes unlabeled clips
    ):
        model = EmotionClassifier(CNN2D, 3, 16, 16000, adversary=DomainAdversary(domain=domain))
        train = _Dataset(labels)
        train.clips = clips
        model.trainer = SimpleNamespace(datamodule=SimpleNamespace(datasets={"train": train}))
        model.setup("test")  # only training sets them
        assert model.adversary.index == {}
        model.setup("fit")
        assert model.adversary.index == index


def test_class_weights_change_the_loss_as_expected():
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    batch = {"label": torch.tensor([0, 0, 1, 1, 2])}
    per_clip = F.cross_entropy(logits, batch["label"], reduction="none")
    plain = classifier(None, [0] * 6 + [1] * 2 + [2] * 4)
    assert plain.loss_weights is None
    assert torch.allclose(plain.loss(logits, batch), per_clip.mean())
    balanced = classifier("balanced", [0] * 6 + [1] * 2 + [2] * 4)
    w = torch.tensor([12 / 18, 12 / 6, 12 / 12])[batch["label"]]  # n / (n_classes * count)
    assert w.sum() != len(w)  # where dividing by the batch size would differ
    assert torch.allclose(balanced.loss(logits, batch), (w * per_clip).sum() / w.sum())
    assert not torch.allclose(balanced.loss(logits, batch), per_clip.mean())
    only_first = classifier([1.0, 0.0, 0.0], [])  # explicit weights: class 0 alone counts
    assert torch.allclose(only_first.loss(logits, batch), per_clip[:2].mean())
    # soft targets (mixup) are weighted too, and divided by the same sum of weights
    target = F.one_hot(batch["label"], 3).float()
    soft = balanced.loss(logits, {**batch, "target": target})
    assert torch.allclose(soft, (w * per_clip).sum() / w.sum())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_one_hot_soft_targets_give_the_hard_label_loss_on_any_batch(label_smoothing: float):
    """Mixup's soft targets and hard labels share one scale: on a batch whose weights do not sum
    to its size, ``F.cross_entropy`` alone gives 1.470 hard vs 1.911 soft."""
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 1, 1, 2])
    weights = [2.0, 0.5, 3.0]  # 2 + 3 * 0.5 + 3 = 6.5 over 5 clips
    model = classifier(weights, [], label_smoothing=label_smoothing)
    hard = model.loss(logits, {"label": labels})
    soft = model.loss(logits, {"label": labels, "target": F.one_hot(labels, 3).float()})
    assert torch.allclose(soft, hard)
    # a mixture weighs its classes' weights mixed alike: sum_i sum_c w_c t_ic (-log p_ic) over
    # sum_i sum_c w_c t_ic, with the smoothed target in the numerator (as PyTorch smooths it)
    target = torch.tensor(
        [[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8]] + [[0.5, 0.5, 0.0]] * 2
    )
    smoothed = target * (1 - label_smoothing) + label_smoothing / 3
    w = torch.tensor(weights)
    expected = -(smoothed * w * logits.log_softmax(-1)).sum() / (target * w).sum()
    assert torch.allclose(model.loss(logits, {"label": labels, "target": target}), expected)


def test_bad_class_weights_are_one_clear_error():
    with pytest.raises(SERError, match=r"class_weights: \[1.0, 2.0\] for 3 classes"):
        EmotionClassifier(CNN2D, 3, 16, 16000, class_weights=[1.0, 2.0])
    with pytest.raises(SERError, match="non-negative"):
        EmotionClassifier(CNN2D, 3, 16, 16000, class_weights=[1.0, -1.0, 1.0])


def test_balanced_sampler_draws_classes_evenly_and_shards_disjointly():
    labels = [0] * 80 + [1] * 15 + [2] * 5
    weights = class_balanced_weights(labels)
    sampler = EpochSampler(len(labels), seed=3, weights=weights)
    drawn = Counter()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == len(labels)
        drawn.update(labels[i] for i, _ in keys)
    assert all(abs(drawn[c] / 2000 - 1 / 3) < 0.04 for c in range(3))  # vs 0.80 / 0.15 / 0.05
    sampler.set_epoch(7)
    whole = list(sampler)
    assert list(EpochSampler(len(labels), seed=3, weights=weights).__iter__()) != whole
    resumed = EpochSampler(len(labels), seed=3, weights=weights)  # a resumed run: same epoch
    resumed.set_epoch(7)
    assert list(resumed) == whole
    for world in (2, 3):
        shards = []
        for rank in range(world):
            shard = EpochSampler(len(labels), seed=3, rank=rank, world_size=world, weights=weights)
            shard.set_epoch(7)
            shards.append(list(shard))
        assert {len(s) for s in shards} == {-(-len(labels) // world)}
        # rank r holds positions r, r + W, ... of the one-process draws: no position twice
        interleaved = [s[k] for k in range(len(shards[0])) for s in shards]
        assert interleaved[: len(whole)] == whole


def test_balance_classes_reaches_the_training_loader_only(ravdess_root: Path):
    four = ["neutral", "happy", "sad", "angry"]  # the toy corpus's classes
    data = RAVDESS(str(ravdess_root), balance_classes=True, emotions=four)
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    expected = class_balanced_weights(data.datasets["train"].labels)
    assert sampler.weights is not None and torch.allclose(sampler.weights, expected)
    assert not isinstance(data.val_dataloader().sampler, EpochSampler)
    plain = RAVDESS(str(ravdess_root), emotions=four)
    plain.setup("fit")
    assert plain.train_dataloader().sampler.weights is None
