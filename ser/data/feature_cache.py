"""Feature cache of a frozen front-end (a pretrained encoder): each clip is encoded once.

A frozen front-end's output depends on the waveform alone, so the key of a clip's entry is the
front-end's identity (bundle, SHA-256 of the weights file, layers) and a hash of the waveform it
is given, which holds the decode settings (rate, noise reduction) and the crop: any change to
either is a new entry, never a stale one. Entries are single files,
``<cache root>/features/<identity hash>/<waveform hash>.pt``, float16, written atomically, so
several processes share them safely. Each missing clip is encoded on its own, unpadded: its
features do not depend on the batch it first came in. The data hands whole clips to a cached
front-end and the pipeline crops the features (:func:`ser.transforms.pipeline.crop_frames`), so
each clip has one entry however it is cropped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ser.io import atomic_path, cache_root


class FeatureCache:
    """Cached outputs of one frozen front-end, called in place of it on a padded batch.

    Args:
        identity: what determines the front-end's output besides the waveform (its ``identity``).
        directory: where entries go; default ``cache_root() / "features"``.

    Shapes: ``(B, T), (B,) -> (B, ..., F), (B,)`` as the front-end's.
    """

    def __init__(self, identity: dict, directory: Path | None = None) -> None:
        key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        directory = Path(directory) if directory is not None else cache_root() / "features"
        self.identity = identity
        name = identity.get("bundle") or identity.get("frontend", "frontend")
        self.path = directory / f"{name}-{key}"
        self.hits = self.misses = 0

    def entry(self, wave: torch.Tensor) -> Path:
        """The file of one unpadded ``(n_samples,)`` waveform."""
        data = wave.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        return self.path / f"{hashlib.sha1(data).hexdigest()}.pt"

    def features(self, frontend: nn.Module, wave: torch.Tensor) -> torch.Tensor:
        """``(..., F)`` features of one unpadded waveform: read, else computed and written."""
        path = self.entry(wave)
        features = None
        if path.is_file():
            try:
                features = torch.load(path, map_location=wave.device, weights_only=True)
            except Exception:  # a damaged entry: computed again below and replaced
                features = None
        if features is not None:
            self.hits += 1
            return features.float()
        self.misses += 1
        length = torch.tensor([wave.numel()], device=wave.device)
        features, frames = frontend(wave[None], length)  # (1, ..., F), (1,)
        stored = features[0, ..., : int(frames[0])].to(torch.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(stored.cpu().clone(), tmp)
        return stored.float()  # as a later read returns it

    def __call__(
        self, frontend: nn.Module, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clips = [self.features(frontend, w[: int(n)]) for w, n in zip(wave, lengths, strict=True)]
        frames = torch.tensor([c.shape[-1] for c in clips], device=wave.device)
        out = clips[0].new_zeros(len(clips), *clips[0].shape[:-1], int(frames.max()))
        for row, c in zip(out, clips, strict=True):
            row[..., : c.shape[-1]] = c
        return out, frames  # (B, ..., F), (B,)
