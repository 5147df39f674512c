"""Knowledge distillation: a student net learns from the labels and from trained teachers' softened
class probabilities (Hinton et al. 2015). The student is an ordinary :class:`EmotionClassifier`
(same metrics, reports and checkpoint), so ``ser test``, ``ser predict`` and ``ser export`` take it
as they take any other."""

from __future__ import annotations

import logging
from dataclasses import asdict

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from ser.errors import SERError
from ser.tasks.classification import EmotionClassifier, NetFactory
from ser.tasks.teacher import Teacher

log = logging.getLogger("ser")

#: Floor of the teacher's log-probabilities: a probability that underflowed to 0 (log -inf) would
#: make the KL term NaN.
MIN_LOG_PROB = -1e4


def distillation_loss(
    logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    cross_entropy: torch.Tensor,
    weight: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - weight) * cross_entropy + weight * T^2 * KL(teacher_T || student_T)`` and the KL.

    ``teacher_T`` and ``student_T`` are the class distributions at temperature ``T``: the softmax
    of the student's logits ``(B, C)`` and of the teacher's log-probabilities ``(B, C)``, divided
    by ``T``; ``T^2`` keeps the term's gradients on the scale of the cross-entropy's.
    """
    student = (logits.float() / temperature).log_softmax(dim=-1)  # (B, C)
    teacher = (teacher_log_probs.float().clamp(min=MIN_LOG_PROB) / temperature).log_softmax(dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return (1 - weight) * cross_entropy + weight * temperature**2 * kl, kl


class Distillation(EmotionClassifier):
    """Train a student net on the labels and on teachers' soft targets.

    By default the teachers (checkpoints or exports of the student's classes and sample rate)
    score each training crop once; their outputs are cached per crop (:mod:`ser.tasks.teacher`), so
    crops must come from a fixed set per clip (``--data.crop_positions``, set by
    ``configs/distill.yaml``). Waveform augmentation on the fly and mixup change every crop at
    random and are then refused; offline copies are crops like any other, and with feature
    augmentation the teachers' targets are those of the crop before it.

    With ``on_the_fly`` the teachers score every training batch as the student sees it, after
    augmentation and mixup ("function matching", Beyer et al. 2022): any crops and augmentation,
    nothing cached, the teachers' forward passes on every step. Their feature pipeline must be the
    student's. Validation and test score the student alone, with plain cross-entropy as the loss.

    Args:
        net: the student network, given in YAML as ``class_path``/``init_args``.
        n_classes: number of classes (linked from the data).
        n_features: feature bins per frame (linked from the data).
        sample_rate: audio sample rate (linked from the data).
        class_names: class names in label order (linked from the data).
        optimizer: optimiser factory, e.g. ``torch.optim.AdamW``.
        lr_scheduler: optional scheduler factory; ``ReduceLROnPlateau`` watches ``val/uar``.
        label_smoothing: label smoothing of the cross-entropy term.
        pipeline: the data's feature pipeline spec (linked from the data).
        corpus: the data's corpus class (linked from the data).
        teachers: the teachers' checkpoints; several are averaged as an ensemble
            (``ser predict --ensemble``'s mean of probabilities).
        weight: the teacher term's share of the loss, in [0, 1] (0: plain cross-entropy).
        temperature: softening of both distributions in the teacher term (> 0).
        on_the_fly: the teachers score each training batch's features as the student gets them
            (augmented, mixed), instead of each crop once from a cache.
        teachers_per_step: on the fly, this many teachers drawn at random score each batch
            (all when ``null``); fewer cost less.
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
        teachers: list[str] | None = None,
        weight: float = 0.5,
        temperature: float = 2.0,
        on_the_fly: bool = False,
        teachers_per_step: int | None = None,
    ) -> None:
        super().__init__(
            net, n_classes, n_features, sample_rate, class_names, optimizer, lr_scheduler,
            label_smoothing, pipeline, corpus,
        )  # fmt: skip
        if not teachers:
            raise SERError(
                "--model.init_args.teachers: give the teacher checkpoints, e.g. "
                "--model.init_args.teachers '[run1/checkpoints/last.ckpt, run2/...]'"
            )
        if not 0 <= weight <= 1 or not temperature > 0:
            raise SERError(
                f"--model.init_args.weight ({weight}) must be in [0, 1] and "
                f"--model.init_args.temperature ({temperature}) above 0"
            )
        if teachers_per_step is not None and (not on_the_fly or teachers_per_step < 1):
            raise SERError(
                f"--model.init_args.teachers_per_step ({teachers_per_step}) must be 1 or more, "
                "with --model.init_args.on_the_fly true (cached outputs cost nothing to combine)"
            )
        self.teachers, self.weight, self.temperature = list(teachers), weight, temperature
        self.on_the_fly, self.teachers_per_step = on_the_fly, teachers_per_step
        #: Loaded when training starts: testing or resuming elsewhere needs no teacher files.
        self.teacher: Teacher | None = None

    #: Clips without a label (``--data.unlabeled``) learn from the teachers' targets alone.
    learns_without_labels = True

    def on_fit_start(self) -> None:
        pipeline = getattr(self.trainer.datamodule, "pipeline", None)
        if pipeline is None and self.on_the_fly:
            raise SERError("distillation on the fly needs a ser data module (--data)")
        if pipeline is not None and not self.on_the_fly:
            check_data(self.trainer.datamodule)
        denoise = None if pipeline is None else pipeline.decode_denoise
        denoise = None if denoise is None else asdict(denoise)
        self.teacher = Teacher(self.teachers, self.class_names, self.sample_rate, denoise,
                               pipeline=pipeline if self.on_the_fly else None)  # fmt: skip
        self.teacher.to(self.device)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.on_the_fly:  # the features the student gets, augmented and mixed
            batch["teacher"] = self.teacher.score_features(
                batch["features"], batch["feature_lengths"], self.teachers_per_step
            )  # (B, n_classes)
        else:  # the crops as decoded, before any augmentation
            crops = [w[:n] for w, n in zip(batch["waveform"], batch["lengths"].tolist(),
                                           strict=True)]  # fmt: skip
            batch["teacher"] = self.teacher.log_probs(crops)  # (B, n_classes)
        return super().training_step(batch, batch_idx)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The distillation loss while training; plain cross-entropy otherwise."""
        cross_entropy = super().loss(logits, batch)
        if "teacher" not in batch:
            return cross_entropy
        loss, kl = distillation_loss(
            logits, batch["teacher"], cross_entropy, self.weight, self.temperature
        )
        self.log("train/teacher_kl", kl, on_step=False, on_epoch=True, batch_size=len(logits),
                 sync_dist=True)  # fmt: skip
        return loss

    def on_train_epoch_end(self) -> None:
        if self.on_the_fly:
            return
        self.teacher.save()
        log.info("teachers: %d crop outputs from the cache, %d computed so far",
                 self.teacher.hits, self.teacher.misses)  # fmt: skip


def check_data(data) -> None:
    """Refuse training data whose crops differ at random from what the teachers scored."""
    pipeline = data.pipeline
    if pipeline.wave_augment and pipeline.offline_copies == 0:
        raise SERError(
            "distillation: waveform augmentation on the fly (--data.augment.waveform) changes "
            "every crop at random, so the teachers' cached outputs would not describe it; use "
            "offline copies (--data.augment.offline_copies N), feature augmentation, or teachers "
            "on the fly (--config configs/distill_on_the_fly.yaml)"
        )
    if pipeline.mixup is not None:
        raise SERError(
            "distillation: --data.augment.mixup mixes clips whose teachers' cached outputs "
            "are not mixed alike; drop mixup, or score with teachers on the fly (--config "
            "configs/distill_on_the_fly.yaml)"
        )
    train = data.datasets.get("train")
    if train is not None and train.crop_positions is None and train.max_samples is not None:
        if any(w.numel() > train.max_samples for w in train.waves):
            raise SERError(
                "distillation: training crops start at any sample, so every epoch's crops are "
                "new to the teachers' cache; set --data.crop_positions N (configs/distill.yaml "
                "sets it) or a --data.max_seconds as long as the longest clip"
            )
