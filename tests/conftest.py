"""Shared fixtures: tiny corpora generated in each corpus's real layout and file naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RAVDESS_16K = REPO.parent / "shared" / "data" / "ravdess-16k"

#: emotion code -> tone frequency of the toy corpus: a learnable, known answer.
TONES = {"01": 220.0, "03": 440.0, "04": 880.0, "05": 1760.0}


def tone(freq: float, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_ravdess(
    root: Path,
    actors=(1, 2, 15, 16, 19, 20),
    clips_per_emotion: int = 2,
    sample_rate: int = 16000,
    seconds: float = 0.6,
    ext: str = "wav",
) -> Path:
    """A toy RAVDESS: ``Actor_XX/03-01-EE-01-SS-01-XX.<ext>``, one tone per emotion."""
    rng = np.random.default_rng(0)
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for code, freq in TONES.items():
            for k in range(clips_per_emotion):
                name = f"03-01-{code}-01-{k % 2 + 1:02d}-{k // 2 + 1:02d}-{actor:02d}.{ext}"
                sf.write(
                    folder / name,
                    tone(freq * (1 + 0.005 * actor), seconds, sample_rate, rng),
                    sample_rate,
                )
    return root


@pytest.fixture
def ravdess_root(tmp_path: Path) -> Path:
    return write_ravdess(tmp_path / "ravdess")


@pytest.fixture
def real_ravdess() -> Path:
    if not (RAVDESS_16K / "Actor_01").is_dir():
        pytest.skip(f"real RAVDESS not found at {RAVDESS_16K}")
    return RAVDESS_16K


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch) -> None:
    """Every test gets its own cache root, so none reads or fills the user's ~/.cache/ser."""
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path_factory.mktemp("ser-cache")))


def write_tone(path: Path, freq: float = 440.0, seconds: float = 0.3, sample_rate: int = 16000,
               seed: int = 0) -> Path:  # fmt: skip
    """A short noisy tone at ``path`` (folders created): a valid, distinct clip in any naming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds, sample_rate, np.random.default_rng(seed)), sample_rate)
    return path


def write_corpus(root: Path, names: list[str], freqs: dict[str, float] | None = None) -> Path:
    """Write one tone per relative path in ``names``; ``freqs`` maps a name part to its tone."""
    for i, name in enumerate(names):
        freq = next((f for k, f in (freqs or {}).items() if k in name), 300.0 + 7 * i)
        write_tone(root / name, freq * (1 + 0.001 * i), seed=i)
    return root
