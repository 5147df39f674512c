"""The classification task's loss and metric path without a trainer: the loss of a batch without
labels, the metrics against scikit-learn, the optimiser check at start-up. Written against the
survivors of ``python benchmarks/mutation.py loss`` (docs/testing.md)."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score
from torchmetrics.functional.classification import multiclass_calibration_error

from ser.data.dataset import UNLABELED
from ser.errors import SERError
from ser.models import CNN2D
from ser.report import ECE_BINS
from ser.tasks import EmotionClassifier
from ser.tasks.classification import check_optimizer
from ser.tasks.metrics import ClassRecall, UnweightedAverageRecall, classification_metrics


def classifier() -> EmotionClassifier:
    return EmotionClassifier(CNN2D, 3, 16, 16000)


def test_a_batch_without_labels_adds_no_loss_and_no_nan():
    logits = torch.randn(3, 3, requires_grad=True)
    loss = classifier().loss(logits, {"label": torch.full((3,), UNLABELED)})
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros(3, 3))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_class_recall_and_uar_against_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(50, 4, generator=generator).softmax(-1)
    labels = torch.randint(3, (50,), generator=generator)  # class 3 has no clips
    recall, uar = ClassRecall(4), UnweightedAverageRecall(4)
    for metric in (recall, uar):
        metric.update(probabilities, labels)
    expected = recall_score(labels, probabilities.argmax(-1), labels=[0, 1, 2], average=None)
    torch.testing.assert_close(recall.compute()[:3], torch.tensor(expected, dtype=torch.float32))
    assert recall.compute()[3].isnan()  # no support: no recall, not 0
    assert float(uar.compute()) == pytest.approx(expected.mean())
    assert float(UnweightedAverageRecall(4).compute()) == 0.0  # no clip at all
    single = ClassRecall(3)  # a class of one clip has a recall of 0 or 1
    single.update(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]))
    assert single.compute().tolist() == [1.0, 1.0, 0.0]


def test_the_metric_collection_is_uar_accuracy_macro_f1_and_ece():
    generator = torch.Generator().manual_seed(1)
    probabilities = torch.rand(200, 4, generator=generator).softmax(-1)
    labels = torch.randint(4, (200,), generator=generator)
    predicted = probabilities.argmax(-1)
    assert set(predicted.tolist()) == set(labels.tolist()) == {0, 1, 2, 3}
    metrics = classification_metrics(4)
    metrics.update(probabilities, labels)
    out = {k: float(v) for k, v in metrics.compute().items()}
    assert set(out) == {"uar", "accuracy", "f1", "ece"}
    assert out["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert out["f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert out["uar"] == pytest.approx(recall_score(labels, predicted, average="macro"))
    ece = multiclass_calibration_error(probabilities, labels, 4, n_bins=ECE_BINS)
    assert out["ece"] == pytest.approx(float(ece))
    assert set(classification_metrics(4, calibration=False)) == {"uar", "accuracy", "f1"}


def test_a_bad_optimiser_or_scheduler_is_refused_at_start_up_by_name():
    def adam(params):
        return torch.optim.Adam(params, lr=-1.0)

    def plateau(optimizer):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=2.0)

    def step(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)

    with pytest.raises(SERError, match=r"^--model\.optimizer: Invalid learning rate: -1\.0"):
        check_optimizer(adam)
    with pytest.raises(SERError, match=r"^--model\.lr_scheduler: Factor should be < 1\.0"):
        check_optimizer(torch.optim.Adam, plateau)
    check_optimizer(torch.optim.Adam, step)  # good ones pass
    check_optimizer(torch.optim.Adam)
