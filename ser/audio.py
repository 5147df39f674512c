"""Reading audio: any format soundfile reads, mixed down to mono and resampled."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ser.errors import AudioError

log = logging.getLogger("ser")

#: A recording whose peak is below this (-80 dBFS) holds no usable speech.
SILENCE_PEAK = 1e-4


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode ``path`` to a mono float32 waveform at the file's own rate.

    Args:
        path: any file soundfile (libsndfile) reads: WAV, FLAC, OGG, MP3, AIFF...

    Returns:
        ``(waveform (n_samples,), sample_rate)``.

    Raises:
        AudioError: the file is missing, unreadable, empty, or holds NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (n_samples, n_channels)
    except Exception as err:  # libsndfile reports every decoding failure as its own error
        raise AudioError(f"{path}: not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples (0 s of audio)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: holds NaN or infinite samples")
    return torch.from_numpy(data.mean(axis=1)), int(rate)  # (n_samples,)


def resample(wave: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """``wave`` (..., T) from ``rate`` to ``sample_rate`` Hz (band-limited sinc interpolation)."""
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave.contiguous()


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode ``path`` to a mono float32 waveform ``(n_samples,)`` at ``sample_rate``.

    Raises:
        AudioError: see :func:`load_audio`.
    """
    wave, rate = load_audio(path)
    return resample(wave, rate, sample_rate)


def is_silent(wave: torch.Tensor) -> bool:
    """Whether ``wave`` never moves more than :data:`SILENCE_PEAK` from its mean: digital silence,
    a dead microphone, or a constant (DC) signal."""
    return wave.numel() == 0 or float((wave - wave.mean()).abs().max()) < SILENCE_PEAK


#: How the warnings name audio that :func:`is_silent` finds.
SILENT = "silent or constant (nothing above -80 dBFS)"


#: File endings of the formats soundfile (libsndfile) decodes: its format names, their usual
#: endings, and Ogg's codecs (``.opus``) where this libsndfile reads them.
AUDIO_EXTENSIONS = frozenset(
    {f".{fmt.lower()}" for fmt in sf.available_formats()}
    | {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".snd"}
    | {f".{codec.lower()}" for codec in sf.available_subtypes("OGG") if codec != "VORBIS"}
)


def is_audio_file(path: Path) -> bool:
    """Whether ``path`` is a file with an audio ending that soundfile reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


#: Endings of audio that libsndfile does not decode: a scan that meets them warns.
UNREADABLE_AUDIO = frozenset(
    {".m4a", ".aac", ".wma", ".mp4", ".webm", ".amr", ".ape", ".wv", ".3gp", ".mka", ".opus"}
    - AUDIO_EXTENSIONS
)


def audio_files(paths: Iterable[Path], where: Path) -> list[Path]:
    """The audio files among ``paths`` (a folder scan), in order. No file drops out without a
    word: audio soundfile cannot decode (``.m4a``...) is named in a warning, other files (notes,
    metadata; hidden ones aside) in an info line.

    Args:
        paths: what the scan found (files and folders).
        where: the folder scanned, for the messages.
    """
    found, audio, others = [], [], []
    for path in paths:
        if is_audio_file(path):
            found.append(path)
        elif path.is_file() and not path.name.startswith("."):
            (audio if path.suffix.lower() in UNREADABLE_AUDIO else others).append(path)
    for level, skipped, what in (
        (
            logging.WARNING,
            audio,
            "audio files soundfile cannot decode; convert them to WAV or FLAC",
        ),
        (logging.INFO, others, "files that are not audio"),
    ):
        if skipped:
            names = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            log.log(level, "%s: ignored %d %s: %s", where, len(skipped), what, names)
    return found


#: Recordings shorter than this are zero-padded up to it: the nets pool time several times.
MIN_SECONDS = 0.25
#: How a whole recording is cut by default: windows of this length (s), stepping by the hop (s).
WINDOW_SECONDS, HOP_SECONDS = 4.0, 2.0


def window_bounds(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the windows covering ``n_samples``.

    A recording no longer than ``window`` is one window; otherwise windows step by ``hop`` and the
    last one is aligned to the end, so every window is full and the tail is not dropped.
    """
    if n_samples <= window:
        return [(0, n_samples)]
    n_windows = math.ceil((n_samples - window) / hop) + 1
    starts = [min(i * hop, n_samples - window) for i in range(n_windows)]
    return [(s, s + window) for s in dict.fromkeys(starts)]


def recording_windows(
    wave: torch.Tensor, sample_rate: int, window_seconds: float, hop_seconds: float
) -> tuple[list[tuple[int, int]], list[torch.Tensor]]:
    """How a whole recording is scored (``ser predict``, ``ser test --score recordings``): padded
    to :data:`MIN_SECONDS` if shorter, then cut into windows of equal length.

    Returns:
        The windows' sample bounds and the ``(window,)`` waveforms.
    """
    min_samples = round(MIN_SECONDS * sample_rate)
    if len(wave) < min_samples:
        wave = torch.nn.functional.pad(wave, (0, min_samples - len(wave)))
    window, hop = round(window_seconds * sample_rate), round(hop_seconds * sample_rate)
    bounds = window_bounds(len(wave), window, hop)
    return bounds, [wave[s:e] for s, e in bounds]
