"""The built-in demo corpus: synthetic emotional-speech-like audio, generated on first use.

Each clip is a harmonic voice source with a moving pitch contour, shaped by moving formants and
cut into syllables, with breath noise and a background noise floor. The four classes differ the way
acted emotions tend to (pitch level and range, speaking rate, loudness, spectral tilt), with wide
per-clip and per-speaker variation so that the task is learnable but not trivial. Files are written
as 16 kHz WAV in the RAVDESS layout and naming, so the real corpus code path reads them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.data.ravdess import RAVDESS
from ser.data.verify import Official
from ser.errors import SERError
from ser.io import cache_root

log = logging.getLogger("ser")

VERSION = 1
SAMPLE_RATE = 16000
#: emotion -> (RAVDESS code, f0 factor, f0 range, syllables/s, level dB, tilt dB/octave, breathiness)
PROFILES = {
    "neutral": ("01", 1.00, 0.08, 4.0, 0.0, -12.0, 0.04),
    "happy": ("03", 1.25, 0.25, 4.8, 3.0, -9.0, 0.04),
    "sad": ("04", 0.92, 0.05, 3.2, -5.0, -15.0, 0.10),
    "angry": ("05", 1.15, 0.16, 5.0, 6.0, -6.0, 0.06),
}
N_ACTORS = 12
CLIPS_PER_EMOTION = 8  # 2 intensities x 2 statements x 2 repetitions, as RAVDESS


def default_root() -> Path:
    """Where the demo corpus is cached: ``$SER_CACHE_DIR/demo-vN`` or ``~/.cache/ser/demo-vN``."""
    return cache_root() / f"demo-v{VERSION}"


def synthesize_clip(
    rng: np.random.Generator, speaker: dict, emotion: str, strong: bool
) -> np.ndarray:
    """One clip of about 2 s at 16 kHz for ``speaker`` speaking with ``emotion``."""
    _, f0_factor, f0_range, rate, level_db, tilt, breath = PROFILES[emotion]
    k = 1.6 if strong else 1.0  # strong intensity exaggerates the departure from neutral
    neutral = PROFILES["neutral"]
    f0_factor = 1 + k * (f0_factor - 1) * rng.uniform(0.6, 1.4)
    f0_range = (
        neutral[2] + k * (f0_range - neutral[2]) * rng.uniform(0.5, 1.5) + rng.uniform(0, 0.04)
    )
    rate = speaker["rate"] * (rate + k * rng.normal(0, 0.5))
    level_db = speaker["level_db"] + k * level_db + rng.normal(0, 2.5)
    tilt = tilt + rng.normal(0, 2.5)

    sr = SAMPLE_RATE
    lead, speech, tail = rng.uniform(0.1, 0.3), rng.uniform(1.3, 1.8), rng.uniform(0.1, 0.3)
    n = int((lead + speech + tail) * sr)
    t = np.arange(n) / sr

    # Pitch: base x emotion, slow random movements scaled by the range, and a falling declination.
    f0 = speaker["f0"] * f0_factor * np.ones(n)
    for _ in range(3):
        f = rng.uniform(0.5, 3.0)
        f0 *= 1 + f0_range * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / 1.7
    f0 *= 1 - 0.08 * (t / t[-1])
    phase = 2 * np.pi * np.cumsum(f0) / sr

    # Syllables: voiced bursts at the speaking rate, each with its own vowel (formants).
    n_syll = max(2, int(round(speech * rate)))
    bounds = np.sort(rng.uniform(lead, lead + speech, n_syll - 1))
    edges = np.concatenate([[lead], bounds, [lead + speech]])
    env = np.zeros(n)
    formants = np.zeros((n, 3))
    vowels = np.array(
        [
            [730, 1090, 2440],
            [270, 2290, 3010],
            [300, 870, 2240],
            [530, 1840, 2480],
            [570, 840, 2410],
        ]
    )
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        i, j = int(a * sr), int(b * sr)
        width = j - i
        if width < 8:
            continue
        voiced = int(width * rng.uniform(0.55, 0.85))
        env[i : i + voiced] = np.sin(np.linspace(0, np.pi, voiced)) ** 0.7
        formants[i:j] = vowels[rng.integers(len(vowels))] * speaker["formant_scale"]
    formants[env == 0] = vowels[0] * speaker["formant_scale"]

    # Harmonic source with spectral tilt, weighted by the formant envelope at each harmonic; the
    # weights move slowly, so they are computed every 4 ms and interpolated.
    ctrl = np.arange(0, n, 64)
    harmonics = np.arange(1, 40)[:, None]  # (H, 1)
    fh = harmonics * f0[ctrl]  # (H, n_ctrl)
    fm = formants[ctrl].T[:, None, :]  # (3, 1, n_ctrl)
    formant_gain = np.exp(-0.5 * ((fh - fm) / (60 + 0.06 * fm)) ** 2).sum(axis=0)  # (H, n_ctrl)
    weights = (fh < 0.45 * sr) * 10 ** (tilt * np.log2(harmonics) / 20) * (0.15 + formant_gain)
    carrier = np.exp(1j * phase)  # e^{i h phase} by repeated multiplication: no per-harmonic sin
    voice, z = np.zeros(n), np.ones(n, dtype=np.complex128)
    for h in range(weights.shape[0]):
        z *= carrier
        if weights[h].any():
            voice += np.interp(t, t[ctrl], weights[h]) * z.imag
    voice *= env
    voice += breath * np.abs(voice).max() * rng.standard_normal(n) * env  # breathiness
    voice /= np.sqrt(np.mean(voice[env > 0] ** 2)) + 1e-9
    voice *= 0.05 * 10 ** (level_db / 20)
    voice += 10 ** (rng.uniform(-68, -58) / 20) * rng.standard_normal(n)  # noise floor
    return np.clip(voice, -1, 1).astype(np.float32)


def synthesize_corpus(root: Path, seed: int = 0) -> None:
    """Write the demo corpus to ``root`` (12 actors x 4 emotions x 8 clips), atomically."""
    rng = np.random.default_rng(seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for actor in range(1, N_ACTORS + 1):
            female = actor % 2 == 0
            speaker = {
                "f0": rng.uniform(175, 230) if female else rng.uniform(95, 135),
                "formant_scale": rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05),
                "rate": rng.uniform(0.85, 1.15),
                "level_db": rng.normal(0, 3),
            }
            folder = tmp / f"Actor_{actor:02d}"
            folder.mkdir()
            for emotion, profile in PROFILES.items():
                for intensity in (1, 2):
                    for statement in (1, 2):
                        for repetition in (1, 2):
                            wave = synthesize_clip(rng, speaker, emotion, strong=intensity == 2)
                            name = f"03-01-{profile[0]}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
                            sf.write(folder / name, wave, SAMPLE_RATE, subtype="PCM_16")
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():  # another process finished first: theirs is identical
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class DemoCorpus(RAVDESS):
    """A small synthetic corpus (12 actors, 4 emotions, 384 clips of about 2 s), made on first use.

    It needs no download and exists so that every command runs on a fresh machine. Switch to real
    data with ``--data configs/data/ravdess.yaml --data.root PATH``.

    Args:
        root: where the demo corpus lives; ``None``: ``$SER_CACHE_DIR`` or ``~/.cache/ser``.
        max_seconds: clips are cropped to this duration (the demo clips last about 2 s).
        All other arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(PROFILES)
    SOURCE = "ser itself (generated on first use)"
    LICENCE = ("mit", "ser's synthetic demo corpus (MIT): tones, not speech")
    SPEECH = "synthetic tones: a demonstration, it recognises no emotion in real speech"
    ARCHIVE = None  # nothing to download
    OFFICIAL = Official(
        clips=N_ACTORS * len(PROFILES) * CLIPS_PER_EMOTION,
        per_class=dict.fromkeys(PROFILES, N_ACTORS * CLIPS_PER_EMOTION),
        speakers=tuple(f"{a:02d}" for a in range(1, N_ACTORS + 1)),
        per_speaker=len(PROFILES) * CLIPS_PER_EMOTION,
        note="as generated by ser",
    )

    def __init__(self, root: str | None = None, max_seconds: float = 2.0, **kwargs) -> None:
        root = str(default_root()) if root is None else root
        super().__init__(root=root, max_seconds=max_seconds, **kwargs)

    def prepare_data(self) -> None:
        if not (self.root / "Actor_01").is_dir():
            log.info("generating the demo corpus in %s ...", self.root)
            synthesize_corpus(self.root)

    def setup(self, stage: str | None = None) -> None:
        if not self.root.is_dir():
            self.prepare_data()
        if self.datasets:  # set up already (fit, then test)
            return
        log.warning(
            "Using the built-in synthetic DEMO corpus at %s (not real speech). To train on real data: "
            "--data configs/data/ravdess.yaml --data.root PATH (see README, 'Corpora').",
            self.root,
        )
        super().setup(stage)


__all__ = ["DemoCorpus", "SERError", "default_root", "synthesize_corpus"]
