"""The shared corpus machinery: clips, the in-memory dataset, collate and the base DataModule.

A batch is a dict (the one place it is documented):

- ``waveform``: ``(B, T)`` float32 mono audio at ``sample_rate``, zero-padded to the longest clip
- ``lengths``: ``(B,)`` int64 valid samples per clip
- ``label``: ``(B,)`` int64 class index into ``class_names``
- ``speaker``: list of B speaker ids; ``path``: list of B file paths

On the device, :meth:`SERDataModule.on_after_batch_transfer` adds

- ``features``: ``(B, n_features, F)`` front-end output (``F`` frames, or samples for ``waveform``)
- ``feature_lengths``: ``(B,)`` int64 valid frames per clip
- ``target``: ``(B, n_classes)`` float soft targets, only while training with mixup (``label``
  stays the hard label for the metrics)

Order on the device: noise reduction (``denoise_on: device``) -> waveform augmentation (training)
-> front-end -> feature augmentation and mixup (training).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ser.audio import is_audio_file, is_silent, read_audio
from ser.data.cache import AudioCache, decode_uncached
from ser.data.emotions import resolve_classes, restrict_to_classes
from ser.data.splits import Split, SplitName, make_split
from ser.data.verify import Official, count_report, duplicate_groups
from ser.errors import AudioError, CorpusNotFoundError, SERError
from ser.transforms import FeatureName, build_frontend
from ser.transforms.augment import FeatureAugment, Mixup, WaveAugment
from ser.transforms.denoise import DenoiseMode, SpectralGate, check_denoise, reduce_noise

log = logging.getLogger("ser")

STAGES = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One recording of a corpus: where it is, its canonical emotion, its speaker, and the stage
    (``train``/``val``/``test``) the corpus itself assigns it to, if it has a predefined split."""

    path: Path
    emotion: str
    speaker: str
    stage: str | None = None


class ClipDataset(Dataset):
    """Decoded clips held in memory; random crop while training, centre crop otherwise.

    Args:
        waves: one ``(n_samples,)`` waveform per clip.
        labels: class index per clip.
        clips: the clips the waveforms came from.
        max_samples: longer clips are cropped to this many samples.
        train: crop at random (``True``) or deterministically from the centre.
    """

    def __init__(
        self,
        waves: list[torch.Tensor],
        labels: list[int],
        clips: list[Clip],
        max_samples: int,
        train: bool,
    ) -> None:
        self.waves, self.labels, self.clips = waves, labels, clips
        self.max_samples, self.train = max_samples, train

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Clip ``key``, or ``(index, crop seed)`` as :class:`EpochSampler` yields while training."""
        i, crop_seed = key if isinstance(key, tuple) else (key, None)
        wave = self.waves[i]
        excess = wave.numel() - self.max_samples
        if excess > 0:
            if self.train:
                generator = None if crop_seed is None else torch.Generator().manual_seed(crop_seed)
                start = int(torch.randint(excess + 1, (), generator=generator))
            else:
                start = excess // 2
            wave = wave[start : start + self.max_samples]
        clip = self.clips[i]
        return {
            "waveform": wave,
            "label": self.labels[i],
            "speaker": clip.speaker,
            "path": str(clip.path),
        }


class EpochSampler(Sampler):
    """Shuffled training order and per-clip crop seeds that depend only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, also after resuming from a checkpoint, so
    a resumed run replays the order and crops of the uninterrupted one; the global random
    generators are left to the model (dropout, augmentation).

    Args:
        n_clips: size of the dataset.
        seed: base seed (the run's seed).
    """

    def __init__(self, n_clips: int, seed: int) -> None:
        self.n_clips, self.seed, self.epoch = n_clips, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_clips

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n_clips, generator=generator).tolist()
        crop_seeds = torch.randint(2**62, (self.n_clips,), generator=generator).tolist()
        yield from zip(order, crop_seeds, strict=True)


def collate(items: list[dict]) -> dict:
    """Zero-pad the waveforms of ``items`` to the longest one and stack them into a batch."""
    lengths = torch.tensor([it["waveform"].numel() for it in items])
    waveform = torch.zeros(len(items), int(lengths.max()))  # (B, T)
    for row, it in zip(waveform, items, strict=True):
        row[: it["waveform"].numel()] = it["waveform"]
    return {
        "waveform": waveform,
        "lengths": lengths,
        "label": torch.tensor([it["label"] for it in items]),
        "speaker": [it["speaker"] for it in items],
        "path": [it["path"] for it in items],
    }


class SERDataModule(L.LightningDataModule):
    """Base of every corpus: scanning, class selection, splitting, decoding and device features.

    A corpus subclass sets ``EMOTIONS`` (its canonical emotions), ``SOURCE`` and ``LAYOUT`` (for the
    error when the root is missing), and implements :meth:`scan`.

    Args:
        root: folder of the corpus.
        sample_rate: audio is resampled to this rate (Hz).
        max_seconds: clips are cropped to this duration (random crop while training).
        features: front-end computed on the batch's device: ``logmel``, ``mfcc``, ``waveform``,
            ``mel_image`` (S4's fixed-size spectrogram picture), or hand-crafted ``zcr_rms``,
            ``spectral``, ``handcrafted`` (see ser.transforms).
        n_mels: mel bands of ``logmel`` and ``mfcc``.
        n_mfcc: coefficients of ``mfcc``.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        top_db: floor log-mel features this many dB below each clip's peak (``None``: no floor).
        normalize: standardise each clip's features (mean 0, std 1 over its valid frames).
        image_size: ``(height, width)`` of the ``mel_image`` front-end's picture (S4: 50 x 150).
        emotions: keep only these emotions, in this class order (``None``: all of the corpus).
        merge: map emotions onto others before selecting, e.g. ``{calm: neutral}``.
        split: ``speaker`` (speaker folds: no speaker in two stages), ``loso`` (leave one speaker
            out: one fold per speaker), ``random`` (stratified, the seeds' protocol),
            ``predefined`` (the corpus's own train/test) or ``all`` (every clip in test).
        test_speakers: speakers held out for test (``speaker`` split); default: fold ``fold``.
        val_speakers: speakers held out for validation; default: the fold after the test fold.
        fold: test fold of the speaker folds when ``test_speakers`` is not given; loop it over
            ``0..n_folds-1`` (``speaker``) or ``0..n_speakers-1`` (``loso``) to cross-validate.
        n_folds: number of speaker folds.
        test_ratio: share of clips for test (``random`` split).
        val_ratio: share of the remaining clips for validation (``random`` split; also the share
            of train carved out for validation by a ``predefined`` split without one).
        seed: seed of the ``random`` split.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (audio is decoded once, up front).
        cache: keep the decoded audio in ``$SER_CACHE_DIR`` (default ``~/.cache/ser``), so later
            runs do not decode again; rebuilt when a file or a decode setting changes.
        verify: on setup, compare the files found with the corpus's official counts and report
            silent files (skipped) and identical-audio duplicates.
        download: fetch and unpack the corpus into ``root`` first if it is not there (corpora
            with a public archive; see ``ser download --help``).
        target_classes: use this label space (a trained model's class names) and keep only the
            clips of the classes it shares with the corpus; ``ser test --ckpt_path`` sets it.
        augment: waveform augmentations applied while training, in order, each to every example
            with its own probability (``class_path``/``init_args`` list of
            :mod:`ser.transforms.augment` classes: AddNoise, Gain, TimeShift, Speed, TimeStretch,
            PitchShift).
        spec_augment: feature augmentations applied while training after the front-end
            (FrequencyMask, TimeMask).
        mixup: mix pairs of training examples (:class:`ser.transforms.augment.Mixup`).
        offline_copies: seed S1's protocol: add this many augmented copies of each training clip
            (made once by ``augment``, deterministic with ``seed``); ``augment`` is then not
            applied on the fly.
        denoise: spectral-gating noise reduction (noisereduce): ``stationary``,
            ``nonstationary`` or ``null`` (off).
        denoise_on: ``decode``: per clip with ``noisereduce.reduce_noise`` when audio is decoded
            (cached with it); ``device``: batched with TorchGate on the batch's device, every stage.
        denoise_prop_decrease: share of the gated noise removed (1: all).
    """

    EMOTIONS: tuple[str, ...] = ()
    SOURCE: str = ""
    LAYOUT: str = ""
    #: The documented counts that ``verify`` checks a copy against (``None``: not documented).
    OFFICIAL: Official | None = None
    #: Name of the public archive in :data:`ser.data.download.ARCHIVES` (``None``: none).
    ARCHIVE: str | None = None

    def __init__(
        self,
        root: str | None,
        sample_rate: int = 16000,
        max_seconds: float = 4.0,
        features: FeatureName = "logmel",
        n_mels: int = 64,
        n_mfcc: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        top_db: float | None = 80.0,
        normalize: bool = True,
        image_size: tuple[int, int] = (50, 150),
        emotions: list[str] | None = None,
        merge: dict[str, str] | None = None,
        split: SplitName = "speaker",
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        fold: int = 0,
        n_folds: int = 6,
        test_ratio: float = 0.3,
        val_ratio: float = 0.05,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool = True,
        verify: bool = True,
        download: bool = False,
        target_classes: list[str] | None = None,
        augment: list[WaveAugment] | None = None,
        spec_augment: list[FeatureAugment] | None = None,
        mixup: Mixup | None = None,
        offline_copies: int = 0,
        denoise: DenoiseMode | None = None,
        denoise_on: Literal["decode", "device"] = "decode",
        denoise_prop_decrease: float = 1.0,
    ) -> None:
        super().__init__()
        # Augmentation modules are not plain data: the CLI's saved config records them.
        self.save_hyperparameters(ignore=["augment", "spec_augment", "mixup"])
        if sample_rate <= 0 or max_seconds <= 0:
            raise SERError(
                f"sample_rate ({sample_rate}) and max_seconds ({max_seconds}) must be positive"
            )
        self.root = Path(root).expanduser() if root is not None else None
        self.class_names, self._emotion_to_class = resolve_classes(self.EMOTIONS, emotions, merge)
        #: The classes the corpus and the label space share (all of them unless target_classes).
        self.compared_classes = list(self.class_names)
        if target_classes is not None:
            self._emotion_to_class, self.compared_classes = restrict_to_classes(
                self._emotion_to_class, self.class_names, list(target_classes)
            )
            self.class_names = list(target_classes)
        self.frontend_config = dict(
            features=features, sample_rate=sample_rate, n_mels=n_mels, n_mfcc=n_mfcc,
            win_ms=win_ms, hop_ms=hop_ms, top_db=top_db, normalize=normalize,
            image_size=list(image_size),
        )  # fmt: skip
        self.frontend = build_frontend(**self.frontend_config)
        self.datasets: dict[str, ClipDataset] = {}
        self.augment = nn.ModuleList(augment or [])
        self.spec_augment = nn.ModuleList(spec_augment or [])
        self.mixup = mixup
        if offline_copies < 0 or (offline_copies > 0 and not self.augment):
            raise SERError(
                f"offline_copies={offline_copies} must be >= 0, and > 0 needs augmentations "
                "in --data.augment to make the copies with"
            )
        check_denoise(denoise, denoise_prop_decrease)
        self.gate = (
            SpectralGate(sample_rate, denoise, denoise_prop_decrease)
            if denoise is not None and denoise_on == "device"
            else None
        )

    # What the CLI links into the model.
    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def sample_rate(self) -> int:
        return self.hparams.sample_rate

    @property
    def n_features(self) -> int:
        return self.frontend.n_features

    # Corpus-specific part.
    def scan(self, root: Path) -> list[Clip]:
        """Find the corpus's clips under ``root`` with their emotion and speaker."""
        raise NotImplementedError

    def check_root(self) -> Path:
        """Return the corpus root, or raise a :class:`CorpusNotFoundError` that says how to get it."""
        if self.root is None or not self.root.is_dir():
            raise CorpusNotFoundError(
                f"{type(self).__name__} corpus not found at {self.root}. "
                f"Get it from {self.SOURCE} and pass its folder as --data.root PATH. "
                f"Expected layout: {self.LAYOUT}"
            )
        return self.root

    # Decoding: what a clip's waveform is made of. A cache of decoded audio is keyed by
    # decode_settings(), so any setting that changes decode() must appear there.
    def decode_settings(self) -> dict:
        """The settings that determine :meth:`decode`'s output (the key of a decoded-audio cache)."""
        settings = {"sample_rate": self.sample_rate}
        hp = self.hparams
        if hp.denoise is not None and hp.denoise_on == "decode":
            settings.update(denoise=hp.denoise, denoise_prop_decrease=hp.denoise_prop_decrease)
        return settings

    @property
    def denoise_config(self) -> dict | None:
        """The noise reduction a model trained on this data expects of its input (or ``None``);
        checkpoints carry it so that ``ser predict`` applies it too."""
        hp = self.hparams
        if hp.denoise is None:
            return None
        return {"mode": hp.denoise, "prop_decrease": hp.denoise_prop_decrease}

    def decode(self, path: Path) -> torch.Tensor:
        """Read one file as ``(n_samples,)`` float32 mono at ``sample_rate``, noise-reduced when
        ``denoise_on`` is ``decode``; raises AudioError."""
        wave = read_audio(path, self.sample_rate)
        hp = self.hparams
        if hp.denoise is not None and hp.denoise_on == "decode":
            wave = reduce_noise(wave, self.sample_rate, hp.denoise, hp.denoise_prop_decrease)
        return wave

    # Building the datasets.
    def scan_files(
        self, root: Path, parse: Callable[[Path], Clip | None], pattern: str = "**/*"
    ) -> list[Clip]:
        """Clips of the audio files under ``root`` matching ``pattern`` that ``parse(path)`` names.

        ``parse`` returns a :class:`Clip` or ``None`` for a file that is not one of the corpus's
        clips; how many such audio files were ignored is logged.
        """
        clips, foreign = [], []
        for path in sorted(root.glob(pattern)):
            if not is_audio_file(path):
                continue
            clip = parse(path)
            if clip is None:
                foreign.append(path)
            else:
                clips.append(clip)
        if foreign:
            log.info("%s: ignored %d audio files under %s that do not follow its naming, e.g. %s",
                     type(self).__name__, len(foreign), root, foreign[0])  # fmt: skip
        return clips

    def select(self, clips: list[Clip]) -> list[Clip]:
        """The clips of the selected classes, sorted by path."""
        kept = [c for c in clips if c.emotion in self._emotion_to_class]
        if not kept:
            raise CorpusNotFoundError(
                f"no {type(self).__name__} clips of classes {self.compared_classes} under "
                f"{self.root}. Expected layout: {self.LAYOUT}"
            )
        return sorted(kept, key=lambda c: str(c.path))

    def clips(self) -> list[Clip]:
        """The clips of the selected classes, sorted by path."""
        return self.select(self.scan(self.check_root()))

    def make_split(self, clips: list[Clip], labels: list[int]) -> Split:
        hp = self.hparams
        return make_split(
            hp.split, [c.speaker for c in clips], labels, [c.stage for c in clips],
            hp.test_speakers, hp.val_speakers, hp.fold, hp.n_folds, hp.test_ratio, hp.val_ratio,
            hp.seed,
        )  # fmt: skip

    def prepare_data(self) -> None:
        """Download the corpus into ``root`` when ``download`` is set and it is not there yet."""
        if not self.hparams.download:
            return
        if self.ARCHIVE is None or self.root is None:
            raise SERError(
                f"--data.download: {type(self).__name__} has no public archive ser can fetch"
                + (" (and --data.root is not set)" if self.root is None else "")
                + f"; get it from {self.SOURCE} and pass its folder as --data.root PATH"
            )
        from ser.data.download import download_corpus

        download_corpus(self.ARCHIVE, self.root)

    def cache_name(self) -> str:
        """The name of this corpus's decoded-audio cache file (with its root and settings)."""
        return type(self).__name__

    def decode_clips(self, clips: list[Clip]) -> list[torch.Tensor | AudioError]:
        """Each clip's :meth:`decode` output (or its :class:`AudioError`), through the cache."""
        paths = [c.path for c in clips]
        if not self.hparams.cache:
            return decode_uncached(paths, self.decode)
        cache = AudioCache(self.cache_name(), self.root, self.decode_settings())
        return cache.decode_all(paths, self.decode)

    def verify(self, scanned: list[Clip]) -> None:
        """Log how the files found compare with the official counts (a warning if they differ)."""
        if self.OFFICIAL is None:
            log.info("%s: %d files found (no official counts to check against)",
                     type(self).__name__, len(scanned))  # fmt: skip
            return
        report = count_report(
            type(self).__name__, [c.emotion for c in scanned], [c.speaker for c in scanned],
            self.OFFICIAL,
        )  # fmt: skip
        (log.info if report.ok else log.warning)("%s", report.text)

    def usable(self, clips: list[Clip]) -> tuple[list[Clip], list[torch.Tensor]]:
        """Decode ``clips``; skip unreadable, empty and silent files with a warning naming each,
        and (with ``verify``) report files whose decoded audio is identical."""
        waves, kept = [], []
        for clip, wave in zip(clips, self.decode_clips(clips), strict=True):
            if isinstance(wave, AudioError):
                log.warning("skipping %s", wave)
            elif is_silent(wave):
                log.warning("skipping %s: silent (peak below -80 dBFS)", clip.path)
            else:
                waves.append(wave)
                kept.append(clip)
        if not kept:
            raise CorpusNotFoundError(
                f"none of the {len(clips)} files under {self.root} could be read"
            )
        if self.hparams.verify:
            for group in duplicate_groups([c.path for c in kept], waves):
                log.warning("identical audio in %d files: %s", len(group), ", ".join(group))
        return kept, waves

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.hparams.download:
            self.prepare_data()
        scanned = self.scan(self.check_root())
        if self.hparams.verify:
            self.verify(scanned)
        kept, waves = self.usable(self.select(scanned))
        labels = [self.class_names.index(self._emotion_to_class[c.emotion]) for c in kept]
        split = self.make_split(kept, labels)
        max_samples = round(self.hparams.max_seconds * self.sample_rate)
        for name, index in split.items():
            self.datasets[name] = ClipDataset(
                [waves[i] for i in index], [labels[i] for i in index], [kept[i] for i in index],
                max_samples, train=name == "train",
            )  # fmt: skip
        self.add_offline_copies()
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.datasets.items())
        log.info("%s: %d clips, %d classes %s; split %s: %s", type(self).__name__, len(kept),
                 len(self.compared_classes), self.compared_classes, self.hparams.split, sizes)  # fmt: skip

    def add_offline_copies(self) -> None:
        """Seed S1's offline protocol: append ``offline_copies`` augmented copies of each training
        clip (full length, before cropping), made by ``augment`` with the generator seeded by
        ``seed`` so that every run gets the same copies."""
        n_copies, train = self.hparams.offline_copies, self.datasets.get("train")
        if n_copies == 0 or train is None or len(train) == 0:
            return
        waves, chunk = train.waves, 64
        copies: list[torch.Tensor] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hparams.seed)
            for _ in range(n_copies):
                for start in range(0, len(waves), chunk):
                    items = [{"waveform": w, "label": 0, "speaker": "", "path": ""}
                             for w in waves[start : start + chunk]]  # fmt: skip
                    batch = collate(items)
                    wave, lengths = self.augment_waveform(batch["waveform"], batch["lengths"])
                    copies += [w[:n].clone() for w, n in zip(wave, lengths.tolist(), strict=True)]
        n = len(waves)
        train.waves = waves + copies
        train.labels = train.labels + train.labels[:n] * n_copies
        train.clips = train.clips + train.clips[:n] * n_copies
        log.info("offline augmentation: %d training clips + %d copies", n, len(copies))

    def augment_waveform(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``augment`` in order to a padded batch ``(B, T), (B,)``."""
        for augmentation in self.augment:
            augmentation.to(wave.device)
            wave, lengths = augmentation(wave, lengths, self.sample_rate)
        return wave, lengths

    def _loader(self, stage: str) -> DataLoader:
        dataset = self.datasets[stage]
        if len(dataset) == 0:
            raise SERError(f"the {stage} split is empty; check the split settings")
        # The run's seed (seed_everything); the loaders draw from their own generators only.
        seed = torch.initial_seed() % 2**32
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochSampler(len(dataset), seed) if stage == "train" else None,
            generator=torch.Generator().manual_seed(seed),
            drop_last=stage == "train" and len(dataset) > self.hparams.batch_size,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Denoise, augment (training only) and compute the features on the batch's device, in
        float32 outside autocast."""
        wave, lengths = batch["waveform"].float(), batch["lengths"]
        device = wave.device
        training = self.trainer is not None and self.trainer.training
        self.frontend.to(device)
        with torch.autocast(device.type, enabled=False):
            if self.gate is not None:
                wave = self.gate.to(device)(wave, lengths)
            if training and self.hparams.offline_copies == 0:
                wave, lengths = self.augment_waveform(wave, lengths)
            batch["waveform"], batch["lengths"] = wave, lengths
            features, feature_lengths = self.frontend(wave, lengths)
            if training:
                for augmentation in self.spec_augment:
                    features, feature_lengths = augmentation.to(device)(features, feature_lengths)
                if self.mixup is not None:
                    features, feature_lengths, batch["target"] = self.mixup(
                        features, feature_lengths, batch["label"], self.n_classes
                    )
        batch["features"], batch["feature_lengths"] = features, feature_lengths
        return batch
