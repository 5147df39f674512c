import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ser.audio import (
    MIN_SECONDS,
    SILENCE_PEAK,
    AudioStream,
    Windower,
    audio_files,
    is_audio_file,
    is_silent,
    read_audio,
    recording_windows,
    resample,
    resample_blocks,
    window_bounds,
)
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


# Tests written against the survivors of `python benchmarks/mutation.py audio` (docs/testing.md).


def test_is_silent_means_nothing_moves_more_than_the_silence_peak_from_the_mean():
    assert is_silent(torch.zeros(0)) and is_silent(torch.zeros(100))
    assert is_silent(torch.full((100,), 0.5))  # a constant (DC) signal holds no speech either
    ripple = 0.5 + SILENCE_PEAK * torch.tensor([0.9, -0.9] * 50)
    assert is_silent(ripple) and not is_silent(0.5 + SILENCE_PEAK * torch.tensor([1.1, -1.1] * 50))
    assert not is_silent(torch.tensor([0.0] * 99 + [0.01]))


def test_audio_files_keeps_audio_in_order_and_names_what_it_skips(tmp_path: Path, caplog):
    for name in ("b.wav", "a.FLAC", "notes.txt", ".hidden.txt", "c.m4a", "d.wma"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.wav").mkdir()  # a folder, whatever its name, is no audio file
    paths = [tmp_path / n for n in ("b.wav", "notes.txt", "folder.wav", "a.FLAC", ".hidden.txt",
                                     "c.m4a", "d.wma")]  # fmt: skip
    assert is_audio_file(tmp_path / "a.FLAC") and not is_audio_file(tmp_path / "folder.wav")
    with caplog.at_level(logging.INFO, logger="ser"):
        found = audio_files(paths, tmp_path)
    assert found == [tmp_path / "b.wav", tmp_path / "a.FLAC"]
    records = {r.levelno: r.getMessage() for r in caplog.records}
    assert records[logging.WARNING] == (
        f"{tmp_path}: ignored 2 audio files soundfile cannot decode; convert them to WAV or FLAC: "
        f"{tmp_path / 'c.m4a'}, {tmp_path / 'd.wma'}"
    )
    assert records[logging.INFO] == (
        f"{tmp_path}: ignored 1 files that are not audio: {tmp_path / 'notes.txt'}"
    )
    many = [tmp_path / f"n{i}.txt" for i in range(7)]
    for path in many:
        path.write_bytes(b"x")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ser"):
        assert audio_files(many, tmp_path) == []
    assert caplog.records[0].getMessage().endswith(", ".join(map(str, many[:5])) + ", ...")


def test_a_short_recording_is_padded_to_min_seconds():
    [(start, end)], [clip] = recording_windows(torch.ones(100), 1000, 4.0, 2.0)
    assert (start, end) == (0, round(MIN_SECONDS * 1000)) and len(clip) == end
    assert torch.equal(clip[:100], torch.ones(100)) and not clip[100:].any()  # zeros after


def test_a_window_is_cut_by_the_piece_that_completes_it():
    windower = Windower(10, window_seconds=1.0, hop_seconds=0.5)  # window 10, hop 5 samples
    assert [(s, e) for s, e, _ in windower.push(torch.ones(10))] == [(0, 10)]
    assert [(s, e) for s, e, _ in windower.push(torch.ones(5))] == [(5, 15)]
    assert windower.finish() == []


@settings(max_examples=200, deadline=None)
@given(n_samples=st.integers(1, 5000), window=st.integers(1, 800), hop=st.integers(1, 800))
def test_windows_tile_any_recording(n_samples: int, window: int, hop: int):
    bounds = window_bounds(n_samples, window, hop)
    starts = [s for s, _ in bounds]
    assert starts[0] == 0 and bounds[-1][1] == n_samples  # from the first sample to the last
    assert all(e - s == min(window, n_samples) for s, e in bounds)  # every window full
    assert all(0 < b - a <= hop for a, b in zip(starts, starts[1:], strict=False))  # no gap
    assert len(bounds) == (1 if n_samples <= window else math.ceil((n_samples - window) / hop) + 1)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(4000, 96000),
    sample_rate=st.sampled_from([8000, 16000, 22050, 44100]),
    n_samples=st.integers(1, 30000),
    data=st.data(),
)
def test_resampling_keeps_the_duration_whole_or_block_by_block(
    rate: int, sample_rate: int, n_samples: int, data
):
    """Any rate to any model rate: the length is the duration at the new rate, rounded; blocks
    cut anywhere resample to the same samples as the whole recording (`ser predict` and training
    see one signal)."""
    wave = torch.randn(n_samples, generator=torch.Generator().manual_seed(n_samples))
    whole = resample(wave, rate, sample_rate)
    assert whole.dtype == torch.float32
    assert abs(len(whole) - n_samples * sample_rate / rate) <= 0.5 + 1e-9
    cuts = sorted(data.draw(st.lists(st.integers(1, n_samples), max_size=5, unique=True)))
    blocks = [wave[a:b] for a, b in zip([0, *cuts], [*cuts, n_samples], strict=True)]
    joined = torch.cat(list(resample_blocks(blocks, rate, sample_rate)))
    torch.testing.assert_close(joined, whole, atol=1e-5, rtol=0)


def test_resample_takes_any_leading_dimensions_and_gives_float32():
    wave = torch.randn(2, 3, 4410, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = resample(wave, 44100, 16000)
    assert out.shape == (2, 3, 1600) and out.dtype == torch.float32
    for i in range(2):
        for j in range(3):  # each row as if resampled alone
            torch.testing.assert_close(out[i, j], resample(wave[i, j].float(), 44100, 16000))


@pytest.mark.parametrize(("n_skipped", "ellipsis"), [(5, False), (6, True)])
def test_audio_files_names_five_skipped_files_then_an_ellipsis(
    tmp_path: Path, caplog, n_skipped: int, ellipsis: bool
):
    paths = [tmp_path / f"n{i}.txt" for i in range(n_skipped)]
    for path in paths:
        path.write_bytes(b"x")
    with caplog.at_level(logging.INFO, logger="ser"):
        audio_files(paths, tmp_path)
    assert caplog.records[0].getMessage().endswith(", ...") == ellipsis


def test_a_stream_tells_a_silent_file_from_a_sound(tmp_path: Path):
    sf.write(tmp_path / "silence.wav", np.zeros(1600, np.float32), 16000)
    sf.write(tmp_path / "tone.wav", 0.1 * np.sin(np.arange(1600) / 5).astype(np.float32), 16000)
    silence, tone = AudioStream(tmp_path / "silence.wav"), AudioStream(tmp_path / "tone.wav")
    assert silence.silent and tone.silent  # nothing read yet
    list(silence), list(tone)
    assert silence.silent and not tone.silent
