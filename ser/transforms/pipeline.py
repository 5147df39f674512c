"""The feature pipeline: the one place where a batch of waveforms becomes features.

Training, validation, test, precise batch norm, ``ser baseline``, ``ser explore``, ``ser predict``,
ensembles and ``ser export`` all run a :class:`FeaturePipeline`; nothing else chains these steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ser.errors import SERError
from ser.spec import build_module, factory_spec
from ser.transforms.augment import FeatureAugment, Mixup, WaveAugment
from ser.transforms.denoise import Denoise
from ser.transforms.normalize import Normalization

#: A front-end class (or a partial of one) called with the sample rate, as the CLI builds it from
#: ``--data.frontend CLASS --data.frontend.ARG VALUE``.
FrontendFactory = Callable[[int], nn.Module]


@dataclass
class Augmentation:
    """Augmentation while training (none at validation, test or inference).

    Args:
        waveform: waveform augmentations, applied in order before the front-end, each to every
            example with its own probability (:mod:`ser.transforms.augment`: AddNoise, Gain,
            TimeShift, Speed, TimeStretch, PitchShift).
        features: feature augmentations after the front-end (FrequencyMask, TimeMask).
        mixup: mix pairs of training examples (:class:`ser.transforms.augment.Mixup`).
        offline_copies: instead of augmenting on the fly, add this many augmented copies of each
            training clip, made once by ``waveform`` (seed S1's protocol).
    """

    waveform: list[WaveAugment] = field(default_factory=list)
    features: list[FeatureAugment] = field(default_factory=list)
    mixup: Mixup | None = None
    offline_copies: int = 0

    def __post_init__(self) -> None:
        if self.offline_copies < 0 or (self.offline_copies > 0 and not self.waveform):
            raise SERError(
                f"augment.offline_copies={self.offline_copies} must be >= 0, and > 0 needs "
                "waveform augmentations (augment.waveform) to make the copies with"
            )


class FeaturePipeline(nn.Module):
    """Noise gate -> waveform augmentation -> front-end -> normalisation -> feature augmentation
    -> mixup.

    In ``train()`` mode every step runs; in ``eval()`` mode only the noise gate and the front-end
    (what validation, test and inference see). Noise reduction at decode time is not a batch step:
    :meth:`recording` applies it to each recording as it is read.

    Args:
        frontend: the front-end class or factory (called with ``sample_rate``), or its
            ``{"class_path", "init_args"}`` spec (then only classes of ``ser.transforms``).
        sample_rate: audio rate (Hz).
        denoise: noise reduction, or ``None``.
        augmentation: what to augment while training, or ``None``.
        normalization: feature normalisation by recording, speaker or corpus
            (:class:`ser.transforms.normalize.Normalization`), or ``None``.

    Shapes: ``(B, T), (B,) -> (B, n_features, F), (B,)``.
    """

    def __init__(
        self,
        frontend: FrontendFactory | dict,
        sample_rate: int,
        denoise: Denoise | None = None,
        augmentation: Augmentation | None = None,
        normalization: Normalization | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.denoise = denoise
        self.normalization = normalization
        #: Plain data that rebuilds the eval part: :meth:`from_spec`.
        self.spec = {
            "frontend": factory_spec(frontend),
            "denoise": None if denoise is None else asdict(denoise),
            "normalization": None if normalization is None else normalization.to_spec(),
        }
        self.frontend = (
            build_module(frontend, "ser.transforms", self.sample_rate)
            if isinstance(frontend, dict)
            else frontend(self.sample_rate)
        )
        # what pins the front-end's output besides its arguments (an encoder's weights hash)
        self.spec["frontend"]["init_args"].update(getattr(self.frontend, "recorded_args", {}))
        self.gate = None if denoise is None else denoise.gate(self.sample_rate)
        augmentation = augmentation or Augmentation()
        self.offline_copies = augmentation.offline_copies
        self.wave_augment = nn.ModuleList(augmentation.waveform)
        self.feature_augment = nn.ModuleList(augmentation.features)
        self.mixup = augmentation.mixup
        #: Called as ``feature_cache(frontend, wave, lengths)`` in place of the front-end on
        #: waveforms no augmentation changed (set by the data for a frozen encoder).
        self.feature_cache: Callable | None = None
        #: Frames kept per clip when the data hands over whole clips (with a feature cache):
        #: :meth:`process` crops the features instead of the data cropping the waveform.
        self.max_frames: int | None = None

    @classmethod
    def from_spec(cls, spec: dict, sample_rate: int) -> FeaturePipeline:
        """The eval pipeline of a checkpoint's ``spec["pipeline"]``."""
        denoise = None if spec.get("denoise") is None else Denoise(**spec["denoise"])
        normalization = spec.get("normalization")  # absent from older checkpoints: none
        normalization = None if normalization is None else Normalization(**normalization)
        return cls(spec["frontend"], sample_rate, denoise, normalization=normalization).eval()

    def with_frontend(self, frontend: FrontendFactory | dict) -> FeaturePipeline:
        """This pipeline's eval part with another front-end (``ser baseline`` compares several)."""
        return FeaturePipeline(
            frontend, self.sample_rate, self.denoise, normalization=self.normalization
        ).eval()

    @property
    def n_features(self) -> int:
        return self.frontend.n_features

    @property
    def decode_denoise(self) -> Denoise | None:
        """The noise reduction applied to whole recordings as they are read (else ``None``)."""
        denoise = self.denoise
        return denoise if denoise is not None and denoise.where == "decode" else None

    @torch.no_grad()
    def frames(self, n_samples: int) -> int:
        """Feature frames the front-end makes of a clip of ``n_samples`` samples (its own
        ``output_frames`` where it has one: a pretrained encoder is costly to run on silence)."""
        if hasattr(self.frontend, "output_frames"):
            return self.frontend.output_frames(n_samples)
        device = next(iter(self.frontend.buffers()), torch.empty(0)).device
        _, lengths = self.frontend(
            torch.zeros(1, n_samples, device=device), torch.tensor([n_samples], device=device)
        )
        return int(lengths[0])

    def check_duration(self, net: nn.Module, seconds: float, what: str) -> float:
        """Refuse clips of ``seconds`` too short for ``net`` (a CNN whose pooling needs more frames
        than the front-end makes of them), saying the minimum; return that minimum (s).

        Args:
            net: the net; one that pools time sets ``min_frames`` (default 1).
            seconds: the clip or window length.
            what: the option that set it, e.g. ``--data.max_seconds``.
        """
        if not (math.isfinite(seconds) and seconds > 0):
            raise SERError(f"{what} ({seconds}) must be a positive number of seconds")
        need = getattr(net, "min_frames", 1)
        high = max(1, round(seconds * self.sample_rate))
        if self.frames(high) < need:
            if self.frames(600 * self.sample_rate) < need:  # e.g. MelImage: a fixed width
                raise SERError(
                    f"{type(net).__name__} needs at least {need} frames; the front-end "
                    f"{type(self.frontend).__name__} never makes that many: widen it"
                )
            raise SERError(
                f"{what} ({seconds:g} s) gives {self.frames(high)} feature frames, and "
                f"{type(net).__name__} needs at least {need}: use {self.shortest(need):.3g} s or more"
            )
        return self.shortest(need)

    def shortest(self, n_frames: int) -> float:
        """The shortest clip (s) of which the front-end makes ``n_frames`` frames (or more)."""
        low, high = 1, self.sample_rate
        while self.frames(high) < n_frames:
            low, high = high, 2 * high
        while low < high:  # frames grow with the samples: the first length with enough
            middle = (low + high) // 2
            low, high = (middle + 1, high) if self.frames(middle) < n_frames else (low, middle)
        return low / self.sample_rate

    def recording(self, wave: torch.Tensor) -> torch.Tensor:
        """One ``(n_samples,)`` recording at ``sample_rate`` as it is read: noise-reduced when the
        pipeline reduces noise at decode time."""
        return wave if self.denoise is None else self.denoise.recording(wave, self.sample_rate)

    def augment_waveform(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The waveform augmentations in order on a padded batch ``(B, T), (B,)``."""
        for augmentation in self.wave_augment:
            wave, lengths = augmentation(wave, lengths, self.sample_rate)
        return wave, lengths

    @torch.no_grad()
    def fit_normalization(
        self, waves: list[torch.Tensor], groups: list[str], population: bool = True
    ) -> None:
        """Compute the normalisation's statistics per group (speaker or corpus) from whole
        recordings ``waves`` (eval features, no augmentation), ``groups`` naming each one's; with
        ``population``, those of all of them too (:meth:`Normalization.fit`)."""
        normalization = self.normalization
        if normalization is None or normalization.level == "recording":
            return
        device = next(iter(self.frontend.buffers()), torch.empty(0)).device
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))  # little padding per batch

        def batches(size: int = 32):
            for start in range(0, len(order), size):
                chosen = order[start : start + size]
                lengths = torch.tensor([len(waves[i]) for i in chosen])
                wave = torch.zeros(len(chosen), int(lengths.max()))
                for row, i in enumerate(chosen):
                    wave[row, : len(waves[i])] = waves[i]
                features, feature_lengths = self.features(wave.to(device), lengths.to(device))
                yield features, feature_lengths, [groups[i] for i in chosen]

        training = self.training
        self.eval()
        normalization.fit(batches(), population)
        self.train(training)
        self.spec["normalization"] = normalization.to_spec()  # with its population statistics

    def features(
        self, wave: torch.Tensor, lengths: torch.Tensor, augmenting: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise gate and the front-end (from the feature cache where it serves)."""
        if self.gate is not None:
            wave = self.gate(wave, lengths)
        if augmenting:
            wave, lengths = self.augment_waveform(wave, lengths)
        if self.feature_cache is not None and not augmenting:
            return self.feature_cache(self.frontend, wave, lengths)
        return self.frontend(wave, lengths)

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor, groups: list[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, n_features, F)`` and their valid lengths ``(B,)`` of a padded batch;
        ``groups``: each clip's speaker or corpus, for normalisation by those."""
        augmenting = self.training and self.offline_copies == 0 and len(self.wave_augment) > 0
        features, feature_lengths = self.features(wave, lengths, augmenting)
        if self.normalization is not None:
            features = self.normalization(features, feature_lengths, groups)
        if self.training:
            for augmentation in self.feature_augment:
                features, feature_lengths = augmentation(features, feature_lengths)
        return features, feature_lengths

    def process(self, batch: dict, n_classes: int) -> dict:
        """Add ``features``, ``feature_lengths`` (and, mixing while training, soft ``target``) to a
        batch on its device, in float32 outside autocast."""
        wave = batch["waveform"].float()
        with torch.autocast(wave.device.type, enabled=False):
            groups = None if self.normalization is None else self.normalization.groups(batch)
            if groups is not None and len(groups) != len(wave):  # one recording's windows
                groups = groups * len(wave)
            features, feature_lengths = self(wave, batch["lengths"], groups)
            if self.max_frames is not None and not batch.get("windows"):
                features, feature_lengths = crop_frames(
                    features, feature_lengths, self.max_frames, self.training
                )
            if self.training and self.mixup is not None:
                features, feature_lengths, batch["target"] = self.mixup(
                    features, feature_lengths, batch["label"], n_classes
                )
        batch["features"], batch["feature_lengths"] = features, feature_lengths
        return batch


def crop_frames(
    features: torch.Tensor, lengths: torch.Tensor, max_frames: int, random: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each clip's valid frames to ``max_frames``: at random (``random``) or centred, as
    :class:`ser.data.dataset.ClipDataset` crops waveforms. ``(B, ..., F), (B,) -> (B, ..., F')``."""
    excess = (lengths - max_frames).clamp(min=0)  # (B,)
    if random:
        start = (torch.rand(excess.shape, device=excess.device) * (excess + 1)).long()
    else:
        start = torch.div(excess, 2, rounding_mode="floor")
    n_frames = min(max_frames, features.shape[-1])
    index = (start[:, None] + torch.arange(n_frames, device=start.device)).clamp(
        max=features.shape[-1] - 1
    )  # (B, F')
    shape = (len(index), *[1] * (features.dim() - 2), n_frames)  # (B, 1, ..., F')
    index = index.view(shape).expand(*features.shape[:-1], n_frames)
    kept = lengths.clamp(max=max_frames)
    valid = torch.arange(n_frames, device=kept.device) < kept[:, None]  # (B, F')
    return features.gather(-1, index) * valid.view(shape), kept
