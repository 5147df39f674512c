"""Reading audio: any format soundfile reads, mixed down to mono and resampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ser.errors import AudioError


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode ``path`` to a mono float32 waveform at ``sample_rate``.

    Args:
        path: any file soundfile (libsndfile) reads: WAV, FLAC, OGG, MP3, AIFF...
        sample_rate: the rate to resample to.

    Returns:
        Tensor of shape ``(n_samples,)``.

    Raises:
        AudioError: the file is missing, unreadable, empty, or holds NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (n_samples, n_channels)
    except (
        Exception
    ) as err:  # libsndfile reports every decoding failure as a RuntimeError/LibsndfileError
        raise AudioError(f"{path}: not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples (0 s of audio)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: holds NaN or infinite samples")
    wave = torch.from_numpy(data.mean(axis=1))  # (n_samples,)
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave.contiguous()


#: File endings of the formats soundfile (libsndfile) decodes.
AUDIO_EXTENSIONS = frozenset(
    {f".{fmt.lower()}" for fmt in sf.available_formats()}
    | {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
)


def is_audio_file(path: Path) -> bool:
    """Whether ``path`` is a file with an audio ending that soundfile reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
