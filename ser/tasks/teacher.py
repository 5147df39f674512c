"""A teacher for distillation: the class probabilities of one or several trained models on the
training crops, computed once per crop and kept on disk, or on the student's own features as it
trains (:meth:`Teacher.score_features`, nothing kept).

Each teacher file (a checkpoint or an export) has its own cache file,
``<cache root>/teachers/<SHA-256 of the file, 32 hex digits>.pt``, mapping a crop (the SHA-1 of its samples) to
the model's log-probabilities. A teacher file that changes gets a new key, so its outputs are
computed again; one that stays the same serves every later run and every ensemble it is part of.
Several teachers are combined as :class:`ser.inference.Ensemble` combines them (the mean of their
probabilities).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from ser.errors import SERError
from ser.inference.models import Ensemble, load_model, member_name, model_info
from ser.inference.predict import clip_probabilities
from ser.io import atomic_path, cache_root, file_lock
from ser.transforms import FeaturePipeline

log = logging.getLogger("ser")

#: Bumped when the cache file's layout changes: older files are then ignored, never misread.
FORMAT = 1


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: the teacher's identity, whatever its name or timestamp."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@torch.no_grad()
def probe_features(pipeline: FeaturePipeline) -> torch.Tensor:
    """What a pipeline's front-end makes of a fixed second of noise: ``(..., F)`` on the CPU."""
    wave = torch.randn(1, pipeline.sample_rate, generator=torch.Generator().manual_seed(0))
    device = next(iter(pipeline.frontend.buffers()), wave).device
    lengths = torch.tensor([pipeline.sample_rate], device=device)
    return pipeline.frontend(wave.to(device), lengths)[0].float().cpu()


def check_features(paths: list[Path], members: list, pipeline: FeaturePipeline) -> None:
    """Refuse a teacher whose front-end does not make the student's features (``pipeline``'s):
    teachers on the fly score the student's own features."""
    reference = None  # the student's probe, made once if a spec differs
    for path, member in zip(paths, members, strict=True):
        theirs = getattr(member, "pipeline", None)
        if theirs is not None and theirs.spec == pipeline.spec:
            continue  # the same chain by construction
        if theirs is not None and theirs.spec["denoise"] == pipeline.spec["denoise"]:
            reference = probe_features(pipeline) if reference is None else reference
            probe = probe_features(theirs)
            if probe.shape == reference.shape and torch.allclose(probe, reference, atol=1e-4):
                continue  # the same features, written another way
        raise SERError(
            f"--model.teachers: {path} makes other features than the student's "
            f"{pipeline.spec['frontend']['class_path']}; teachers on the fly score the "
            "student's features, so they need its front-end (and a checkpoint, not an export)"
        )


def crop_key(wave: torch.Tensor) -> str:
    """The identity of one crop: the SHA-1 of its float32 samples."""
    return hashlib.sha1(wave.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


class OutputCache:
    """One teacher file's log-probabilities per crop: in memory, merged into its file on save.

    Args:
        path: the teacher file.
        directory: where cache files go; default ``cache_root() / "teachers"``.
    """

    def __init__(self, path: Path, directory: Path | None = None) -> None:
        directory = Path(directory) if directory is not None else cache_root() / "teachers"
        self.path = directory / f"{file_digest(path)[:32]}.pt"
        self.entries: dict[str, torch.Tensor] = self._read()
        self.new = 0  # entries not yet saved

    def _read(self) -> dict[str, torch.Tensor]:
        if not self.path.is_file():
            return {}
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            if data["format"] != FORMAT:
                return {}
            return dict(zip(data["keys"], data["log_probs"], strict=True))
        except Exception as err:  # a foreign or damaged file: compute again rather than fail
            log.warning("ignoring unreadable teacher cache %s (%s)", self.path, err)
            return {}

    def save(self) -> None:
        """Merge the new entries with what other runs saved meanwhile, and write the file."""
        if not self.new:
            return
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            self.entries = self._read() | self.entries
            keys = sorted(self.entries)
            data = {
                "format": FORMAT,
                "keys": keys,
                "log_probs": torch.stack([self.entries[k] for k in keys]),  # (N, n_classes)
            }
            with atomic_path(self.path) as tmp:
                torch.save(data, tmp)
        self.new = 0


class Teacher:
    """The soft targets of trained models for a student's training crops.

    Args:
        paths: the teachers' checkpoints (``.ckpt``) or exports (``model.ts``); several are
            combined as an ensemble.
        class_names: the student's classes, in order: every teacher must have these.
        sample_rate: the student's sample rate: every teacher must have it.
        denoise: the student data's decode-time noise reduction (``model_info``'s form): every
            teacher must expect the same recordings.
        directory: where cache files go; default ``cache_root() / "teachers"``.
        pipeline: the student's feature pipeline, given when the teachers score the student's
            features themselves (:meth:`score_features`): every teacher must be a checkpoint or
            model folder whose front-end makes the same features, and nothing is cached.

    Raises:
        SERError: a teacher file is missing or unreadable, or does not fit the student's data.
    """

    def __init__(
        self,
        paths: list[str | Path],
        class_names: list[str],
        sample_rate: int,
        denoise: dict | None = None,
        directory: Path | None = None,
        pipeline: FeaturePipeline | None = None,
    ) -> None:
        if not paths:
            raise SERError("--model.teachers: give one or more teacher checkpoints")
        paths = [Path(p).expanduser() for p in paths]
        self.members = [
            load_model(p, f"--model.teachers: {member_name(p, i, len(paths))}")
            for i, p in enumerate(paths, start=1)
        ]
        if len(self.members) > 1:
            Ensemble(self.members)  # checks that the members agree with each other
        info = model_info(self.members[0])
        student = {"class_names": list(class_names), "sample_rate": sample_rate, "denoise": denoise}
        for key, value in student.items():
            if info[key] != value:
                raise SERError(
                    f"--model.teachers: {paths[0]} has {key} {info[key]}, the student's data "
                    f"{value}; a teacher must see the student's recordings and classes"
                )
        if pipeline is not None:
            check_features(paths, self.members, pipeline)
        self.caches = [] if pipeline is not None else [OutputCache(p, directory) for p in paths]
        self.hits = self.misses = 0  # outputs looked up (one per crop and teacher), in total

    def to(self, device: torch.device) -> Teacher:
        self.members = [m.to(device).eval() for m in self.members]
        return self

    @torch.no_grad()
    def log_probs(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """The teachers' combined log-probabilities ``(N, n_classes)`` of ``crops`` (each
        ``(n_samples,)``, on the teachers' device), from the caches where known."""
        keys = [crop_key(c) for c in crops]
        outputs = []
        for model, cache in zip(self.members, self.caches, strict=True):
            missing = [i for i, k in enumerate(keys) if k not in cache.entries]
            if missing:  # unpadded, as `ser predict` scores them: independent of the batch
                device = crops[0].device
                computed = clip_probabilities(model, [crops[i] for i in missing], device).log()
                for i, row in zip(missing, computed, strict=True):  # row: (n_classes,)
                    cache.entries[keys[i]] = row.clone()
                cache.new += len(missing)
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            outputs.append(torch.stack([cache.entries[k] for k in keys]))  # (N, n_classes)
        return Ensemble.combine(outputs).to(crops[0].device)  # (N, n_classes)

    @torch.no_grad()
    def score_features(
        self, features: torch.Tensor, lengths: torch.Tensor, members: int | None = None
    ) -> torch.Tensor:
        """The combined log-probabilities ``(B, n_classes)`` of a batch of the student's own
        features ``(B, ..., F)``, augmented and mixed as it trains on them (the teachers' pipeline
        is the student's: see ``pipeline``).

        Args:
            members: score with this many teachers drawn at random (all when ``None``): at a
                fraction of the cost, and, on average over draws, the same target at temperature
                1 (cross-entropy is linear in the target probabilities).
        """
        chosen = self.members
        if members is not None and members < len(chosen):
            chosen = [chosen[i] for i in torch.randperm(len(chosen))[:members].tolist()]
        return Ensemble.combine([m.net(features, lengths) / m.temperature for m in chosen])

    def save(self) -> None:
        """Write every teacher's new outputs to its cache file."""
        for cache in self.caches:
            cache.save()
