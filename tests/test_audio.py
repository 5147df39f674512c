from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.audio import read_audio
from ser.errors import AudioError


def test_mixdown_and_resample(tmp_path: Path):
    t = np.arange(44100) / 44100
    left = np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32) * 0.5
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 44100)
    wave = read_audio(path, 16000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - 16000) <= 1
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 2  # the tone survives at 1 Hz per bin


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable audio file"),
        (b"this is a text file, not audio", "not a readable audio file"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, match: str):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=match) as err:
        read_audio(path, 16000)
    assert str(path) in str(err.value)


def test_zero_samples_and_nan(tmp_path: Path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(empty, 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(nan, 16000)


def test_missing_file(tmp_path: Path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "nope.wav", 16000)
