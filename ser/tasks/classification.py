"""Emotion classification: one shared step and one metric path for every net."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from ser import rng
from ser.data.dataset import UNLABELED
from ser.errors import SERError, check_fraction
from ser.spec import SPEC_KEY, SPEC_VERSION, factory_spec
from ser.tasks.adversary import DomainAdversary, last_linear
from ser.tasks.metrics import ClassRecall, classification_metrics

STAGES = ("train", "val", "test")
# A pooled corpus without clips in a short evaluation (the sanity check) or on one process is
# computed from empty counts, as it must be on every process; torchmetrics warns each time.
warnings.filterwarnings("ignore", r"The ``compute`` method of metric .* before the ``update``")
#: Checkpoint entry holding the generators' state (see :mod:`ser.rng`).
RNG_KEY = "ser_rng"
NetFactory = Callable[[int, int, int], nn.Module]


def balanced_class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    """``n / (n_classes * count)`` per class (scikit-learn's "balanced"); a class without clips
    gets weight 0 (it has nothing to weigh)."""
    labels = [label for label in labels if label >= 0]  # clips without a label weigh nothing
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=n_classes).float()
    weights = len(labels) / (n_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))  # (n_classes,)


class EmotionClassifier(L.LightningModule):
    """Train a net on a batch's ``features`` with cross-entropy; log UAR, accuracy and macro F1.

    Args:
        net: the network, given in YAML as ``class_path``/``init_args`` (``n_classes``,
            ``n_features`` and ``sample_rate`` come from the data).
        n_classes: number of classes (linked from the data).
        n_features: feature bins per frame (linked from the data).
        sample_rate: audio sample rate (linked from the data).
        class_names: class names in label order (linked from the data).
        optimizer: optimiser factory, e.g. ``torch.optim.AdamW``.
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` watches ``val/uar``.
        label_smoothing: cross-entropy label smoothing.
        class_weights: weight each class's cross-entropy: ``balanced`` (``n / (n_classes * count)``
            from the training split's counts, so every class weighs alike), a list of one weight
            per class, or ``None`` (every clip alike).
        pipeline: the data's feature pipeline spec (linked from the data; written into every
            checkpoint so that inference rebuilds the same pipeline).
        corpus: the data's corpus class (linked from the data).
        corpora: the names of the corpora of a pool (linked from the data): validation and test
            metrics are also logged per corpus (``val/uar/<name>``); ``None``: one corpus.
        adversary: domain-adversarial training (:class:`ser.tasks.adversary.DomainAdversary`):
            the net's embedding is pushed to hide each training clip's speaker or corpus.
    """

    def __init__(
        self,
        net: NetFactory,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        pipeline: dict | None = None,
        corpus: str | None = None,
        corpora: list[str] | None = None,
        class_weights: Literal["balanced"] | list[float] | None = None,
        adversary: DomainAdversary | None = None,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads this frame)
        super().__init__()
        check_fraction("EmotionClassifier", "label_smoothing", label_smoothing)
        check_optimizer(optimizer, lr_scheduler)
        # The task's own settings; what the data links in lives once, in the checkpoint's spec.
        # Factories are stored as plain class_path/init_args data: the checkpoint stays loadable
        # with weights_only=True.
        self.save_hyperparameters(ignore=[
            "net", "optimizer", "lr_scheduler", "n_classes", "n_features", "sample_rate",
            "class_names", "pipeline", "corpus", "corpora", "adversary",
        ])  # fmt: skip
        self.n_classes, self.n_features, self.sample_rate = n_classes, n_features, sample_rate
        self.pipeline_spec, self.corpus = pipeline, corpus
        self.net_spec = factory_spec(net)
        self.hparams.update(
            net=self.net_spec,
            optimizer=factory_spec(optimizer),
            lr_scheduler=None if lr_scheduler is None else factory_spec(lr_scheduler),
        )
        self.net = net(n_classes, n_features, sample_rate)
        #: Domain-adversarial training on the net's embedding (training only; not exported).
        self.adversary = adversary
        if adversary is not None:
            self.hparams["adversary"] = {"domain": adversary.domain, "weight": adversary.weight}
            self._embedding_layer = last_linear(self.net)
            adversary.build(self._embedding_layer.in_features)
        self.class_names = list(class_names or [str(i) for i in range(n_classes)])
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        if isinstance(class_weights, list) and (
            len(class_weights) != n_classes
            or not all(0 <= w < math.inf for w in class_weights)
            or sum(class_weights) == 0  # every loss 0/0: NaN from the first step
        ):
            raise SERError(
                f"--model.class_weights: {class_weights} for {n_classes} classes "
                f"({', '.join(self.class_names)}); give one finite, non-negative weight per class, "
                "not all 0, or balanced"
            )
        # Not saved in the state dict: derived from the data (or the config) on every setup.
        self.register_buffer("loss_weights", None, persistent=False)
        metrics = classification_metrics(n_classes)
        # ModuleDict keys must not shadow nn.Module attributes such as ``train``.
        self.metrics = nn.ModuleDict(
            {f"{s}_metrics": metrics.clone(prefix=f"{s}/") for s in STAGES}
        )
        # A pool's corpora, each on its own: ``val/uar/<name>``... (keys without dots for ModuleDict)
        self.corpora = list(corpora or [])
        self.corpus_metrics = nn.ModuleDict({
            f"{s}_{name}": classification_metrics(n_classes, calibration=False).clone(
                prefix=f"{s}/", postfix=f"/{name}"
            )
            for s in STAGES[1:] for name in self.corpora
        })  # fmt: skip
        self.test_confusion_metric = MulticlassConfusionMatrix(n_classes)
        self.val_class_recall = ClassRecall(n_classes)  # one curve per class in TensorBoard
        #: Divides the logits at validation/test (not while training); fitted after fit by
        #: :class:`ser.calibration.TemperatureScaling`, carried by the checkpoint's spec.
        self.temperature = 1.0
        #: Confusion matrix (true x predicted counts) of the last test run.
        self.test_confusion: torch.Tensor | None = None
        #: One row per test clip or recording (path, speaker, label, probabilities) of the last test.
        self.test_predictions: list[dict] = []
        self._resumed_rng: dict | None = None

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(features, lengths)

    #: Whether the task learns from training clips without a label (``--data.unlabeled``).
    learns_without_labels = False

    def setup(self, stage: str) -> None:
        self.loss_weights = self.class_weight_tensor()
        train = getattr(getattr(self._trainer, "datamodule", None), "datasets", {}).get("train")
        if stage == "fit" and train is not None and UNLABELED in train.labels:
            corpus_adversary = self.adversary is not None and self.adversary.domain == "corpus"
            if not (self.learns_without_labels or corpus_adversary):
                raise SERError(
                    "--data.unlabeled: this model learns from labels only; learn from recordings "
                    "without one with teachers (--config configs/distill.yaml --model.init_args."
                    "teachers [...]) or a corpus adversary (--model.adversary.domain corpus)"
                )
        if self.adversary is not None and stage == "fit" and train is not None:
            by_speaker = self.adversary.domain == "speaker"
            self.adversary.set_domains(
                [c.speaker if by_speaker else (c.corpus or "") for c in train.clips]
            )

    def class_weight_tensor(self) -> torch.Tensor | None:
        """``(n_classes,)`` cross-entropy weights of ``class_weights`` (``None``: unweighted)."""
        weights = self.hparams.get("class_weights")
        if weights is None:
            return None
        if weights != "balanced":
            return torch.tensor(weights, dtype=torch.float32, device=self.device)
        data = getattr(self.trainer, "datamodule", None)
        train = getattr(data, "datasets", {}).get("train")
        if train is None or len(train) == 0:  # ser test/validate: no training, no weights needed
            return None
        return balanced_class_weights(train.labels, self.n_classes).to(self.device)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Cross-entropy against the batch's soft ``target`` (mixup) when present, else ``label``;
        weighted per class with ``class_weights``.

        A weighted loss is divided by the sum of its examples' weights, soft targets' too (each
        example weighs its target's mixture of class weights): ``F.cross_entropy`` divides soft
        targets by the batch size instead, which would change the loss's scale from batch to
        batch with mixup and class weights, and part from the hard-label loss on one-hot targets.
        """
        target = batch.get("target", batch["label"])  # (B, n_classes) probabilities or (B,) indices
        if target.dim() == 1 and not bool((target != UNLABELED).any()):
            return logits.sum() * 0.0  # only clips without labels: no cross-entropy term (not 0/0)
        smoothing = self.hparams.label_smoothing
        if self.loss_weights is None or target.dim() == 1:
            return F.cross_entropy(
                logits, target, weight=self.loss_weights, label_smoothing=smoothing
            )
        total = F.cross_entropy(
            logits, target, weight=self.loss_weights, label_smoothing=smoothing, reduction="sum"
        )
        return total / (target.to(self.loss_weights.dtype) @ self.loss_weights).sum()  # (B,) summed

    def shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        # The test runs in float32 whatever the training precision: the figures `ser predict` gives
        exact = torch.autocast(batch["features"].device.type, enabled=False)
        with exact if stage == "test" else contextlib.nullcontext():
            logits, extra_loss = self.forward_batch(batch, stage)  # (B, n_classes)
        if stage != "train":
            logits = logits / self.temperature
        if batch.get("windows"):  # one recording's windows: scored as `ser predict` scores it
            # the log of the mean of the windows' probabilities; its softmax is that mean
            logits = logits.float().softmax(dim=-1).mean(dim=0, keepdim=True).log()  # (1, C)
        loss = self.loss(logits, batch) + extra_loss
        labels = batch["label"]
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels),
            sync_dist=True,
        )
        metrics = self.metrics[f"{stage}_metrics"]
        probabilities = logits.detach().float().softmax(dim=-1)  # (B, n_classes)
        if stage == "train":  # training clips without a label (--data.unlabeled) score nothing
            labeled = labels != UNLABELED
            probabilities, labels = probabilities[labeled], labels[labeled]
        metrics.update(probabilities, labels)
        self.log_dict(
            metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(labels)
        )
        if stage != "train":
            self.log_per_corpus(probabilities, batch, stage)
        if stage == "val":
            self.val_class_recall.update(probabilities, labels)
        if stage == "test":
            self.test_confusion_metric.update(logits.detach(), labels)
            self.collect_predictions(batch, logits.detach())
        return loss

    def log_per_corpus(self, probabilities: torch.Tensor, batch: dict, stage: str) -> None:
        """Update and log each pooled corpus's metrics on its clips of the batch. Every corpus on
        every step, if only with no clip: with several processes each must log the same metrics.
        A corpus without clips in the stage's split (left out of testing) is not logged at all: a
        metric of no clip is absent, not 0."""
        present = self.stage_corpora(stage)
        for name in self.corpora:
            if name not in present:
                continue
            mask = torch.tensor([c == name for c in batch["corpus"]], device=probabilities.device)
            metrics = self.corpus_metrics[f"{stage}_{name}"]
            if mask.any():
                metrics.update(probabilities[mask], batch["label"][mask])
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=max(1, int(mask.sum())))

    def stage_corpora(self, stage: str) -> set[str]:
        """The corpora with clips in the data's ``stage`` split (every corpus when unknown)."""
        data = getattr(self._trainer, "datamodule", None)
        dataset = getattr(data, "datasets", {}).get(stage)
        if dataset is None:
            return set(self.corpora)
        return {clip.corpus for clip in dataset.clips}

    def collect_predictions(self, batch: dict, logits: torch.Tensor) -> None:
        """Keep each test clip's path, speaker, corpus, label and class probabilities."""
        probabilities = logits.float().softmax(dim=-1).cpu().tolist()
        for path, speaker, corpus, label, probs in zip(
            batch["path"], batch["speaker"], batch.get("corpus", [""] * len(batch["path"])),
            batch["label"].tolist(),
            probabilities, strict=True,
        ):  # fmt: skip
            self.test_predictions.append({
                "path": path, "speaker": speaker, "corpus": corpus, "label": label,
                "probabilities": probs,
            })  # fmt: skip

    def forward_batch(self, batch: dict, stage: str) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Logits ``(B, n_classes)`` of a batch and any extra loss term of the task (0 here).

        A task with more loss terms (e.g. a VAE's reconstruction and KL) overrides this and logs
        its terms; the classification loss and the metrics stay in :meth:`shared_step`.
        """
        if self.adversary is None or stage != "train":
            return self(batch["features"], batch["feature_lengths"]), 0.0
        captured: list[torch.Tensor] = []
        hook = self._embedding_layer.register_forward_pre_hook(
            lambda module, args: captured.append(args[0])
        )
        try:
            logits = self(batch["features"], batch["feature_lengths"])
        finally:
            hook.remove()
        steps = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        progress = self.global_step / max(1, steps)
        domain_loss, accuracy = self.adversary.loss(captured[-1], batch, progress)
        self.log_dict(
            {"train/domain_loss": domain_loss, "train/domain_accuracy": accuracy},
            on_step=False, on_epoch=True, batch_size=len(logits),
        )  # fmt: skip
        return logits, domain_loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        recall = self.val_class_recall.compute()  # (n_classes,), summed over processes
        self.val_class_recall.reset()
        for name, value in zip(self.class_names, recall.tolist(), strict=True):
            if value == value:  # NaN: the class has no validation clips
                self.log(f"val_recall/{name}", value, on_epoch=True, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def on_test_epoch_end(self) -> None:
        self.test_confusion = self.test_confusion_metric.compute().cpu()  # summed over processes
        self.test_confusion_metric.reset()
        if self.trainer.world_size > 1:  # every process's rows, in the order of one process
            gathered: list[list[dict]] = [[] for _ in range(self.trainer.world_size)]
            torch.distributed.all_gather_object(gathered, self.test_predictions)
            self.test_predictions = sorted((r for rows in gathered for r in rows),
                                           key=lambda r: r["path"])  # fmt: skip

    def configure_optimizers(self):
        # A net with parts at their own learning rates (a fine-tuned encoder) names its groups.
        groups = getattr(self.net, "parameter_groups", None)
        optimizer = self.optimizer(groups() if groups is not None else self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/uar", "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store what inference needs as plain data (the layout is :mod:`ser.spec`'s)."""
        checkpoint[SPEC_KEY] = {
            "version": SPEC_VERSION,
            "class_names": self.class_names,
            "sample_rate": self.sample_rate,
            "n_features": self.n_features,
            "pipeline": self.current_pipeline_spec(),
            "net": self.net_spec,
            "corpus": self.corpus,
            "temperature": self.temperature,  # optional: 1.0 when absent (older checkpoints)
        }
        # Saved after validation, before the next epoch draws anything: restoring it when training
        # resumes replays the shuffles, crops and dropout of the uninterrupted run.
        checkpoint[RNG_KEY] = rng.capture()

    def current_pipeline_spec(self) -> dict | None:
        """The pipeline spec with the data's normalisation as it is now: its statistics are
        computed at setup, after the model was given the spec."""
        datamodule = getattr(self._trainer, "datamodule", None)
        pipeline = getattr(datamodule, "pipeline", None)
        if self.pipeline_spec is None or pipeline is None:
            return self.pipeline_spec
        return {**self.pipeline_spec, "normalization": pipeline.spec.get("normalization")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)
        self.temperature = float((checkpoint.get(SPEC_KEY) or {}).get("temperature", 1.0))

    def on_fit_start(self) -> None:
        # Training (also when resumed from a calibrated checkpoint) and its validation are
        # uncalibrated; the temperature is fitted again after fit.
        self.temperature = 1.0

    def on_train_start(self) -> None:
        # After the sanity check (which draws a DataLoader seed), before the first resumed epoch.
        if self._resumed_rng is not None:
            rng.restore(self._resumed_rng)
            self._resumed_rng = None


def check_optimizer(
    optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None = None
) -> None:
    """Build the optimiser (and scheduler) once on a stand-in parameter, so that a learning rate,
    betas or decay out of range is refused at start-up, not after the data is decoded.

    Raises:
        SERError: naming the optimiser's (or scheduler's) own complaint.
    """
    stand_in = nn.Parameter(torch.zeros(1))
    for what, build in (("--model.optimizer", lambda: optimizer([stand_in])),
                        ("--model.lr_scheduler", lambda: lr_scheduler(optimizer([stand_in])))):  # fmt: skip
        if what.endswith("scheduler") and lr_scheduler is None:
            continue
        try:
            build()
        except (ValueError, TypeError) as err:  # torch's optimisers check their own arguments
            raise SERError(f"{what}: {err}") from None
