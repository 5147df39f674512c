"""The base corpus DataModule: scanning, class selection, splitting, decoding, loaders and the
feature pipeline on the batch's device. The batch layout is documented in :mod:`ser.data.dataset`."""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ser.audio import (
    MIN_SECONDS,
    RESAMPLER,
    SILENT,
    audio_files,
    is_silent,
    read_audio,
    recording_windows,
)
from ser.data.cache import AudioCache, decode_uncached
from ser.data.dataset import (
    UNLABELED,
    UNLABELED_CORPUS,
    Clip,
    ClipDataset,
    EpochSampler,
    ShardSampler,
    class_balanced_weights,
    collate,
)
from ser.data.emotions import resolve_classes, restrict_to_classes
from ser.data.feature_cache import FeatureCache
from ser.data.splits import Split, SplitSpec
from ser.data.verify import (
    Official,
    count_report,
    duplicate_groups,
    natural,
    speaker_key,
    speaker_line,
    speaker_variants,
)
from ser.errors import AudioError, CorpusNotFoundError, SERError
from ser.spec import class_path
from ser.transforms.denoise import Denoise
from ser.transforms.frontends import LogMel
from ser.transforms.normalize import Normalization
from ser.transforms.pipeline import Augmentation, FeaturePipeline, FrontendFactory

log = logging.getLogger("ser")

__all__ = ["Clip", "SERDataModule"]

#: The lowest ``sample_rate`` accepted (Hz): below it no speech band is left to classify.
MIN_SAMPLE_RATE = 4000


def readable(
    clips: list[Clip], decoded: list[torch.Tensor | AudioError], what: str = ""
) -> tuple[list[Clip], list[torch.Tensor]]:
    """The clips whose decoded audio can be used, and that audio: an unreadable, empty or silent
    file is skipped with a warning naming it (``what`` before the warning)."""
    kept, waves = [], []
    for clip, wave in zip(clips, decoded, strict=True):
        if isinstance(wave, AudioError):
            log.warning("%sskipping %s", what, wave)
        elif is_silent(wave):
            log.warning("%sskipping %s: %s", what, clip.path, SILENT)
        else:
            kept.append(clip)
            waves.append(wave)
    return kept, waves


def check_unlabeled(folder: Path, balance_classes: bool, augment: Augmentation | None) -> None:
    """Refuse ``--data.unlabeled`` where it cannot work, before any work: a folder that is not
    there, or settings that need every training clip's label (class-balanced sampling, mixup)."""
    if not folder.is_dir():
        raise SERError(f"--data.unlabeled {folder}: no such folder (give a folder of recordings)")
    if balance_classes or (augment is not None and augment.mixup is not None):
        raise SERError(
            "--data.unlabeled: recordings without labels cannot be drawn by class "
            "(--data.balance_classes) or mixed with labels (--data.augment.mixup); drop those"
        )


class SERDataModule(L.LightningDataModule):
    """Base of every corpus: scanning, class selection, splitting, decoding and device features.

    A corpus subclass sets ``EMOTIONS`` (its canonical emotions), ``SOURCE`` and ``LAYOUT`` (for the
    error when the root is missing), and implements :meth:`scan`.

    Args:
        root: folder of the corpus.
        sample_rate: audio is resampled to this rate (Hz).
        max_seconds: clips are cropped to this duration (random crop while training).
        frontend: the feature front-end, a class of :mod:`ser.transforms` given as
            ``class_path``/``init_args`` (the sample rate is linked): ``LogMel`` (default),
            ``MFCC``, ``Waveform``, ``MelImage`` or ``Handcrafted``.
        emotions: keep only these emotions, in this class order (``None``: all of the corpus).
        merge: map emotions onto others before selecting, e.g. ``{calm: neutral}``.
        split: how the clips are split into train/val/test (:class:`ser.data.splits.SplitSpec`).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (audio is decoded once, up front).
        cache: keep the decoded audio in ``$SER_CACHE_DIR`` (default ``~/.cache/ser``), so later
            runs do not decode again; rebuilt when a file or a decode setting changes. With a
            frozen encoder front-end (``SpeechEncoder``), its features are cached too
            (:mod:`ser.data.feature_cache`).
        verify: on setup, compare the files found with the corpus's official counts and report
            silent files (skipped) and identical-audio duplicates.
        download: fetch and unpack the corpus into ``root`` first if it is not there (corpora
            with a public archive; see ``ser download --help``).
        target_classes: use this label space (a trained model's class names) and keep only the
            clips of the classes it shares with the corpus; ``ser test --ckpt_path`` sets it.
        augment: augmentation while training (:class:`ser.transforms.Augmentation`).
        denoise: noise reduction (:class:`ser.transforms.denoise.Denoise`), ``None``: off.
        balance_classes: draw training clips class-balanced (with replacement, each class equally
            often per epoch) instead of each clip once per epoch; for imbalanced corpora.
        crop_positions: training crops start at one of this many evenly spaced offsets of their
            clip (a fixed set of crops per clip, whose teacher outputs distillation caches);
            ``None``: at any sample.
        normalization: normalise each feature bin per ``recording``, ``speaker`` or ``corpus``
            (:mod:`ser.transforms.normalize`; speaker and corpus statistics are computed at
            setup over every clip of the group); ``None``: only the front-end's own.
        unlabeled: a folder of recordings without labels (searched at any depth), added to the
            training clips with no label (:data:`ser.data.dataset.UNLABELED`) for a task that
            learns from them without one: distillation (the teachers' targets are theirs) or a
            corpus adversary (they are a domain of their own, ``unlabeled``). With speaker
            normalisation each folder of them is one speaker. Unreadable files are skipped by
            name. ``None``: none.
    """

    EMOTIONS: tuple[str, ...] = ()
    SOURCE: str = ""
    #: (licence as the Hugging Face Hub's metadata names it, what it means for a model trained on
    #: the corpus): the model card of ``ser export --format hub``; ``None``: not recorded.
    LICENCE: tuple[str, str] | None = None
    #: What the corpus's speech is (language, speakers, material): the model card's limits.
    SPEECH: str = ""
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
        frontend: FrontendFactory | None = None,
        emotions: list[str] | None = None,
        merge: dict[str, str] | None = None,
        split: SplitSpec | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool = True,
        verify: bool = True,
        download: bool = False,
        target_classes: list[str] | None = None,
        augment: Augmentation | None = None,
        denoise: Denoise | None = None,
        balance_classes: bool = False,
        crop_positions: int | None = None,
        normalization: str | None = None,
        unlabeled: str | None = None,
    ) -> None:
        super().__init__()
        if not (sample_rate >= MIN_SAMPLE_RATE and 0 < max_seconds < math.inf):
            raise SERError(
                f"sample_rate ({sample_rate}) must be at least {MIN_SAMPLE_RATE} Hz (speech needs "
                f"8000 or more) and max_seconds ({max_seconds}) a positive number of seconds"
            )
        if batch_size < 1 or num_workers < 0:
            raise SERError(
                f"batch_size ({batch_size}) must be at least 1 and num_workers ({num_workers}) >= 0"
            )
        if crop_positions is not None and crop_positions < 1:
            raise SERError(f"crop_positions ({crop_positions}) must be at least 1, or null")
        self.crop_positions = crop_positions
        self.unlabeled = None if unlabeled is None else Path(unlabeled).expanduser()
        if self.unlabeled is not None:
            check_unlabeled(self.unlabeled, balance_classes, augment)
        self.root = Path(root).expanduser() if root is not None else None
        self.sample_rate, self.max_seconds = int(sample_rate), float(max_seconds)
        self.split = split if split is not None else SplitSpec()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache, self.verify_files, self.download = cache, verify, download
        self.balance_classes = balance_classes
        self.class_names, self._emotion_to_class = resolve_classes(self.EMOTIONS, emotions, merge)
        #: The classes the corpus and the label space share (all of them unless target_classes).
        self.compared_classes = list(self.class_names)
        if target_classes is not None:
            self._emotion_to_class, self.compared_classes = restrict_to_classes(
                self._emotion_to_class, self.class_names, list(target_classes)
            )
            self.class_names = list(target_classes)
        #: Every step from waveform to features (train and eval behaviour).
        self.pipeline = FeaturePipeline(
            frontend or LogMel, self.sample_rate, denoise, augment,
            None if normalization is None else Normalization(normalization),
        )  # fmt: skip
        if cache and getattr(self.pipeline.frontend, "frozen", False):
            # Whole clips are encoded once and cached; their features are cropped, not the audio.
            self.pipeline.feature_cache = FeatureCache(self.pipeline.frontend.identity)
            frame_rate = self.pipeline.frontend.frame_rate
            self.pipeline.max_frames = max(1, round(self.max_seconds * frame_rate))
        self.datasets: dict[str, ClipDataset] = {}
        #: ``(window, hop)`` in seconds when the test split scores whole recordings.
        self.test_windows: tuple[float, float] | None = None
        #: What changes every test clip (:meth:`perturb_test`); ``None``: the clips as they are.
        self.test_perturbation: Callable | None = None
        self._clean_test_waves: list[torch.Tensor] | None = None

    # What the CLI links into the model.
    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return self.pipeline.n_features

    @property
    def pipeline_spec(self) -> dict:
        """Plain data that rebuilds the pipeline's eval part (carried by checkpoints)."""
        return self.pipeline.spec

    @property
    def corpus(self) -> str:
        """The corpus class, as checkpoints record what a model was trained on."""
        return class_path(type(self))

    @property
    def corpus_names(self) -> list[str] | None:
        """The names of the corpora a pool holds (metrics per corpus); ``None``: one corpus."""
        return None

    def clip_weights(self, clips: list[Clip]) -> list[float] | None:
        """Each training clip's relative chance of being drawn; ``None``: each once per epoch."""
        return None

    def training_weights(self, dataset: ClipDataset) -> torch.Tensor | None:
        """The training sampler's weight per clip (``None``: each clip once per epoch). With
        ``balance_classes`` every class equally often; in a pool with corpus shares
        (:meth:`clip_weights`) classes are balanced within each corpus, its share kept."""
        weights = self.clip_weights(dataset.clips)
        if weights is None:
            return class_balanced_weights(dataset.labels) if self.balance_classes else None
        shares = torch.as_tensor(weights, dtype=torch.double)
        if not self.balance_classes:
            return shares
        labels = torch.as_tensor(dataset.labels, dtype=torch.long)
        balanced = torch.empty_like(shares)
        for corpus in {clip.corpus for clip in dataset.clips}:
            idx = torch.tensor([i for i, c in enumerate(dataset.clips) if c.corpus == corpus])
            within = class_balanced_weights(labels[idx].tolist())  # (n,) each class equally
            balanced[idx] = within / within.sum() * shares[idx].sum()
        return balanced

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
        settings = {"sample_rate": self.sample_rate, "resampler": RESAMPLER}
        denoise = self.pipeline.decode_denoise
        if denoise is not None:
            settings.update(denoise=denoise.mode, denoise_prop_decrease=denoise.prop_decrease)
        return settings

    def decode(self, path: Path) -> torch.Tensor:
        """Read one file as ``(n_samples,)`` float32 mono at ``sample_rate``, as the pipeline
        prepares a recording (noise-reduced at decode time if so set); raises AudioError."""
        return self.pipeline.recording(read_audio(path, self.sample_rate))

    # Building the datasets.
    def speaker_gender(self, speaker: str) -> str | None:
        """The speaker's gender from the corpus's own metadata (``male``/``female``), for the
        test report's per-gender figures; ``None``: not recorded."""
        return None

    def scan_files(
        self, root: Path, parse: Callable[[Path], Clip | None], pattern: str = "**/*"
    ) -> list[Clip]:
        """Clips of the audio files under ``root`` matching ``pattern`` that ``parse(path)`` names.

        ``parse`` returns a :class:`Clip` or ``None`` for a file that is not one of the corpus's
        clips; how many such audio files were ignored is logged.
        """
        clips, foreign = [], []
        for path in audio_files(sorted(root.glob(pattern)), root):
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
        return self.split.apply([c.speaker for c in clips], labels, [c.stage for c in clips])

    def prepare_data(self) -> None:
        """Download the corpus into ``root`` when ``download`` is set and it is not there yet."""
        if not self.download:
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
        if not self.cache:
            return decode_uncached(paths, self.decode)
        cache = AudioCache(self.cache_name(), self.root, self.decode_settings())
        return cache.decode_all(paths, self.decode)

    def verify(self, scanned: list[Clip]) -> None:
        """Log how the files found compare with the official counts (a warning if they differ)."""
        if self.OFFICIAL is None:
            log.info("%s: %d files found (no official counts to check against)\n%s",
                     type(self).__name__, len(scanned),
                     speaker_line([c.speaker for c in scanned]))  # fmt: skip
            return
        report = count_report(
            type(self).__name__, [c.emotion for c in scanned], [c.speaker for c in scanned],
            self.OFFICIAL,
        )  # fmt: skip
        (log.info if report.ok else log.warning)("%s", report.text)

    def usable(self, clips: list[Clip]) -> tuple[list[Clip], list[torch.Tensor]]:
        """Decode ``clips``; skip unreadable, empty and silent files with a warning naming each,
        and (with ``verify``) report files whose decoded audio is identical."""
        kept, waves = readable(clips, self.decode_clips(clips))
        short = [
            c.path
            for c, w in zip(kept, waves, strict=True)
            if len(w) < MIN_SECONDS * self.sample_rate
        ]
        if short:
            log.warning("%d clips are shorter than %g s (too little to judge an emotion), e.g. %s",
                        len(short), MIN_SECONDS, ", ".join(map(str, short[:5])))  # fmt: skip
        if not kept:
            raise CorpusNotFoundError(
                f"none of the {len(clips)} files under {self.root} could be read"
            )
        if self.verify_files:
            for group in duplicate_groups([c.path for c in kept], waves):
                log.warning("identical audio in %d files: %s", len(group), ", ".join(group))
        return kept, waves

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.download:
            self.prepare_data()
        scanned = self.scan(self.check_root())
        if self.verify_files:
            self.verify(scanned)
        self.warn_speaker_variants([c.speaker for c in scanned])
        kept, waves = self.usable(self.select(scanned))
        labels = [self.class_names.index(self._emotion_to_class[c.emotion]) for c in kept]
        split = self.make_split(kept, labels)
        for name, index in split.items():
            self.datasets[name] = ClipDataset(
                [waves[i] for i in index], [labels[i] for i in index], [kept[i] for i in index],
                self.crop_samples(), train=name == "train", crop_positions=self.crop_positions,
            )  # fmt: skip
        self.check_split()
        self.finish_setup()
        log.info("%s: %d clips, %d classes %s; split %s: %s", type(self).__name__, len(kept),
                 len(self.compared_classes), self.compared_classes, self.split.protocol,
                 self.describe_split())  # fmt: skip

    def warn_speaker_variants(self, speakers: list[str]) -> None:
        """Warn about speaker ids that look like one id written two ways (``01`` and ``1``): a
        speaker-independent split would test on part of a training speaker."""
        counts = Counter(speakers)
        for group in speaker_variants(speakers):
            log.warning("%s: speakers %s look like one speaker written differently (%s clips); "
                        "the split treats them as different speakers, so one may train and test "
                        "on the same voice: rename the files or report the naming to ser",
                        type(self).__name__, ", ".join(group),
                        ", ".join(str(counts[s]) for s in group))  # fmt: skip

    def check_split(self) -> None:
        """Refuse a test fold of fewer than ``split.min_clips_per_class`` clips per compared class
        and warn about a validation fold of fewer, or a held-out fold without some of the compared
        classes, naming the fold's speakers, clips and classes."""
        for stage in ("test", "val"):
            data = self.datasets.get(stage)
            if data is not None:
                self.check_fold(stage, data.labels, data.clips)

    def check_fold(self, stage: str, labels: list[int], clips: list[Clip], of: str = "") -> None:
        """:meth:`check_split` for one held-out fold (``of``: whose part of it, e.g. a corpus of
        a pool)."""
        if not labels:
            return
        min_clips = self.split.min_clips_per_class * len(self.compared_classes)
        classes = Counter(self.class_names[label] for label in labels)
        absent = [c for c in self.compared_classes if c not in classes]
        speakers = sorted({c.speaker for c in clips}, key=lambda s: natural(speaker_key(s)))
        what = (
            f"the {stage} fold{of} holds {len(labels)} clips of {len(classes)} classes ("
            + ", ".join(f"{c} {classes[c]}" for c in self.class_names if c in classes)
            + (f"; absent: {', '.join(absent)}" if absent else "")
            + f") from speakers {', '.join(speakers)}"
        )
        if len(labels) < min_clips:
            options = (
                f"--data.split.{stage}_speakers, --data.split.n_folds"
                if not of
                else f"{stage}_speakers or n_folds of that corpus's split in --data.corpora"
            )
            message = (f"{what}: fewer than {min_clips} clips ({self.split.min_clips_per_class} "
                       "per class, --data.split.min_clips_per_class) give no meaningful UAR; "
                       f"hold out more speakers ({options}) or check the speaker ids")  # fmt: skip
            if stage == "test":
                raise SERError(message)
            log.warning("%s", message)
        elif absent:
            log.warning("%s: the report marks the absent classes absent and the UAR averages "
                        "the classes present only", what)  # fmt: skip

    def finish_setup(self) -> None:
        """What every data module does once its datasets are built: unlabeled recordings join
        the training clips, the feature cache is described, the normalisation's statistics are
        computed, and offline augmented copies are made."""
        self.add_unlabeled()
        self.log_feature_cache()
        self.apply_test_perturbation()
        self.fit_normalization()
        self.add_offline_copies()

    def add_unlabeled(self) -> None:
        """Append the recordings of ``unlabeled`` to the training clips, without labels; skip
        unreadable and silent files with a warning naming each."""
        train = self.datasets.get("train")
        if self.unlabeled is None or train is None:
            return
        paths = audio_files(sorted(self.unlabeled.rglob("*")), self.unlabeled)
        found = []
        for path in paths:  # each folder one speaker
            folder = path.parent.relative_to(self.unlabeled).as_posix()
            speaker = UNLABELED_CORPUS if folder == "." else f"{UNLABELED_CORPUS}/{folder}"
            found.append(Clip(path, "", speaker, "train", UNLABELED_CORPUS))
        clips, waves = readable(found, decode_uncached(paths, self.decode), "--data.unlabeled: ")
        if not waves:
            raise SERError(
                f"--data.unlabeled {self.unlabeled}: none of its {len(paths)} audio files could "
                "be read; give a folder of recordings (WAV, FLAC, OGG...)"
            )
        train.waves = train.waves + waves
        train.labels = train.labels + [UNLABELED] * len(waves)
        train.clips = train.clips + clips
        log.info("--data.unlabeled: %d recordings without labels join the %d training clips",
                 len(waves), len(train.waves) - len(waves))  # fmt: skip

    def crop_samples(self) -> int | None:
        """Samples a clip is cropped to as it is read; ``None`` with a feature cache: whole clips
        are handed over (one cache entry each) and the pipeline crops their features."""
        if self.pipeline.max_frames is not None:
            return None
        return round(self.max_seconds * self.sample_rate)

    def log_feature_cache(self) -> None:
        """Say where a frozen encoder's features are cached, and what bypasses the cache."""
        cache = self.pipeline.feature_cache
        if cache is None:
            return
        log.info("frozen front-end features of whole clips cached in %s; the features are "
                 "cropped to %d frames (%.1f s) instead of the audio", cache.path,
                 self.pipeline.max_frames, self.max_seconds)  # fmt: skip
        if self.pipeline.wave_augment and self.pipeline.offline_copies == 0:
            log.info("waveform augmentation changes every training clip: the encoder runs on each "
                     "training batch, the feature cache serves validation and test only")  # fmt: skip

    def fit_normalization(self) -> None:
        """The speaker or corpus statistics of the feature normalisation, over every clip of each
        group in any stage (a test speaker's own recordings, without their labels)."""
        normalization = self.pipeline.normalization
        if normalization is None or normalization.level == "recording":
            return
        clips = [c for data in self.datasets.values() for c in data.clips]
        waves = [w for data in self.datasets.values() for w in data.waves]
        by_speaker = normalization.level == "speaker"
        groups = [c.speaker if by_speaker else (c.corpus or "") for c in clips]
        self.pipeline.fit_normalization(waves, groups)
        log.info("feature normalisation per %s: statistics of %d %ss", normalization.level,
                 len(normalization.stats), normalization.level)  # fmt: skip

    def describe_split(self) -> str:
        """Each stage's clip count, and its speakers when the split holds speakers out."""
        parts = []
        for stage, data in self.datasets.items():
            speakers = sorted({c.speaker for c in data.clips})
            held_out = self.split.protocol in ("speaker", "loso") and stage != "train"
            named = f" (speakers {', '.join(speakers)})" if held_out and speakers else ""
            parts.append(f"{stage} {len(data)}{named}")
        return "; ".join(parts)

    def add_offline_copies(self) -> None:
        """Seed S1's offline protocol: append ``augment.offline_copies`` augmented copies of each
        training clip (full length, before cropping), made by the pipeline's waveform
        augmentations with the generator seeded by the split seed, so every run gets the same."""
        n_copies, train = self.pipeline.offline_copies, self.datasets.get("train")
        if n_copies == 0 or train is None or len(train) == 0:
            return
        waves = train.waves
        copies = augmented(waves * n_copies, self.pipeline.augment_waveform, self.split.seed)
        n = len(waves)
        train.waves = waves + copies
        train.labels = train.labels + train.labels[:n] * n_copies
        train.clips = train.clips + train.clips[:n] * n_copies
        log.info("offline augmentation: %d training clips + %d copies", n, len(copies))

    def perturb_test(self, augment: Callable | None) -> None:
        """Test on every test clip changed by ``augment`` (``(wave, lengths) -> (wave,
        lengths)``, e.g. noise at a fixed SNR: ``ser test --perturb``), the same in every run.
        A speaker's (or corpus's) normalisation statistics are then those of the changed clips:
        all of a speaker's recordings made in that condition, as they would be."""
        self.test_perturbation = augment
        if self.datasets:  # set up already: change the test clips now
            self.apply_test_perturbation()
            self.fit_normalization()

    def apply_test_perturbation(self) -> None:
        """Replace the test clips by the perturbed ones (from the clean ones each time)."""
        test = self.datasets.get("test")
        if test is None:
            return
        if self._clean_test_waves is None:
            self._clean_test_waves = test.waves
        test.waves = self._clean_test_waves
        if self.test_perturbation is not None:
            test.waves = augmented(test.waves, self.test_perturbation, seed=0)

    def score_recordings(self, window_seconds: float, hop_seconds: float) -> None:
        """Make the test split serve whole recordings, each as one batch of windows (as
        ``ser predict`` cuts them) instead of centre crops."""
        if not (window_seconds > 0 and hop_seconds > 0):
            raise SERError(
                f"window ({window_seconds}) and hop ({hop_seconds}) must be positive seconds"
            )
        self.test_windows = (window_seconds, hop_seconds)

    def _loader(self, stage: str) -> DataLoader:
        dataset = self.datasets[stage]
        if len(dataset) == 0:
            raise SERError(f"the {stage} split is empty; check the split settings")
        # The run's seed (seed_everything); the loaders draw from their own generators only.
        seed = torch.initial_seed() % 2**32
        batch_size, collate_fn = self.batch_size, collate
        if stage == "test" and self.test_windows is not None:
            dataset = ClipDataset(dataset.waves, dataset.labels, dataset.clips, None, train=False)
            batch_size = 1
            collate_fn = functools.partial(collate_windows, self.sample_rate, *self.test_windows)
        # Several processes (DDP): this rank's share; the CLI turns Lightning's padded sampler off.
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if stage == "train":
            sampler = EpochSampler(len(dataset), seed, rank, world, self.training_weights(dataset))
        else:
            sampler = ShardSampler(len(dataset), rank, world) if world > 1 else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed),
            drop_last=stage == "train" and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Run the feature pipeline on the batch's device: every step while training, the gate and
        the front-end otherwise."""
        training = self.trainer is not None and self.trainer.training
        self.pipeline.to(batch["waveform"].device).train(training)
        return self.pipeline.process(batch, self.n_classes)


def augmented(
    waves: list[torch.Tensor], augment: Callable, seed: int, chunk: int = 64
) -> list[torch.Tensor]:
    """Each of ``waves`` changed by ``augment`` (``(wave (B, T), lengths (B,)) -> same``), in
    padded batches of ``chunk``, with torch's generator seeded by ``seed`` (restored after)."""
    out: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(waves), chunk):
            batch = collate([{"waveform": w, "label": 0, "speaker": "", "path": ""}
                             for w in waves[start : start + chunk]])  # fmt: skip
            wave, lengths = augment(batch["waveform"], batch["lengths"])
            out += [w[:n].clone() for w, n in zip(wave, lengths.tolist(), strict=True)]
    return out


def collate_windows(
    sample_rate: int, window_seconds: float, hop_seconds: float, items: list[dict]
) -> dict:
    """One whole recording as a batch of its windows (:func:`ser.audio.recording_windows`)."""
    (item,) = items
    windows = recording_windows(item["waveform"], sample_rate, window_seconds, hop_seconds)[1]
    waveform = torch.stack(windows)  # (n_windows, window)
    return {
        "waveform": waveform,
        "lengths": torch.full((len(windows),), waveform.shape[1]),
        "label": torch.tensor([item["label"]]),
        "speaker": [item["speaker"]],
        "path": [item["path"]],
        "corpus": [item["corpus"]],
        "windows": True,
    }
