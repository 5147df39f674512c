from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.audio import AudioStream, read_audio
from ser.errors import AudioError


def test_mixdown_and_resample(tmp_path: Path):
    t = np.arange(44100) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([left, right], axis=1).astype(np.float32)  # (T, 2): different channels
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 44100)
    wave = read_audio(path, 16000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - 16000) <= 1
    amplitude = 2 * torch.fft.rfft(wave).abs() / wave.numel()  # 1 Hz per bin
    assert int(amplitude.argmax()) == 440  # the tones survive resampling...
    # ... each at half its channel's amplitude: the mean of the channels, not their sum or one
    assert float(amplitude[440]) == pytest.approx(0.25, rel=0.02)
    assert float(amplitude[1000]) == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("block_seconds", [None, 0.3])
def test_mixdown_is_the_mean_of_every_channel(tmp_path: Path, block_seconds: float | None):
    channels = np.random.default_rng(0).uniform(-0.3, 0.3, (16000, 3)).astype(np.float32)
    sf.write(tmp_path / "three.wav", channels, 16000, subtype="FLOAT")
    blocks = list(AudioStream(tmp_path / "three.wav", block_seconds=block_seconds))
    expected = torch.from_numpy(channels.mean(axis=1))  # (T,)
    torch.testing.assert_close(torch.cat(blocks), expected)
    torch.testing.assert_close(read_audio(tmp_path / "three.wav", 16000), expected)


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
