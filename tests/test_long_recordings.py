"""Long recordings: read in blocks with the whole-file path's windows and probabilities, speech
segments from a voice-activity detector, and the probabilities-over-time plot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.audio import (
    BLOCK_SECONDS,
    AudioStream,
    Windower,
    load_audio,
    recording_windows,
    resample,
    resample_blocks,
    window_bounds,
)
from ser.errors import SERError
from ser.inference import clip_probabilities, load_model, predict_files
from ser.inference.predict import main as predict_main

from .helpers import RATE, noise, speech_with_pauses, write_checkpoint

HAS_VAD = importlib.util.find_spec("silero_vad") is not None


@pytest.mark.parametrize(("rate", "sample_rate"), [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 22050), (24414, 16000), (12207, 16000), (44056, 16000), (96000, 16000)])  # fmt: skip
@pytest.mark.parametrize("block", [1, 7919, 10**6])
def test_resampled_blocks_join_to_the_whole_resampled(rate: int, sample_rate: int, block: int):
    wave = torch.randn(rate * 3 + 123, generator=torch.Generator().manual_seed(rate))
    whole = resample(wave, rate, sample_rate)
    blocks = list(resample_blocks(torch.split(wave, block), rate, sample_rate))
    assert torch.cat(blocks).shape == whole.shape
    torch.testing.assert_close(torch.cat(blocks), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n_samples", [10, 399, 400, 401, 850, 1234])
@pytest.mark.parametrize("piece", [1, 37, 400, 5000])
@pytest.mark.parametrize("hop", [100, 400])
def test_windower_cuts_the_windows_of_window_bounds(n_samples: int, piece: int, hop: int):
    wave = torch.arange(n_samples, dtype=torch.float32)
    windower = Windower(1, 400, hop)  # rate 1: window and hop in samples
    windower.min_samples = 0
    windows = [w for p in torch.split(wave, piece) for w in windower.push(p)] + windower.finish()
    assert [(s, e) for s, e, _ in windows] == window_bounds(n_samples, 400, hop)
    assert all(torch.equal(clip, wave[s:e]) for s, e, clip in windows)
    assert len(windower.buffer) <= 400 + piece  # what it holds does not grow with the recording


def test_stream_holds_one_block_at_a_time(tmp_path: Path):
    sf.write(tmp_path / "long.wav", noise(75.0, rate=48000, channels=2), 48000)
    stream = AudioStream(tmp_path / "long.wav", RATE)
    sizes = [len(b) for b in stream]
    assert len(sizes) >= 3 and max(sizes) <= (BLOCK_SECONDS + 0.01) * RATE
    assert stream.n_samples == sum(sizes) == 75 * RATE and 0.3 < stream.peak < 1


def whole_file_probabilities(model, path: Path, window: float, hop: float):
    """The whole-file path as ``ser predict`` had it: decode all, resample, cut, classify."""
    wave, rate = load_audio(path)
    bounds, windows = recording_windows(resample(wave, rate, RATE), RATE, window, hop)
    return bounds, clip_probabilities(model, windows, torch.device("cpu"))


@pytest.mark.parametrize(("seconds", "rate", "channels"), [(0.2, RATE, 1), (3.1, 44100, 2), (75.3, 48000, 2), (64.0, RATE, 1)])  # fmt: skip
def test_blocks_answer_as_the_whole_file(tmp_path: Path, seconds: float, rate: int, channels: int):
    model = load_model(write_checkpoint(tmp_path / "tiny.ckpt"))
    path = tmp_path / "clip.wav"
    sf.write(path, noise(seconds, rate=rate, channels=channels, seed=4), rate)
    (prediction,) = predict_files(model, [path], 4.0, 2.0, batch_size=7)
    bounds, expected = whole_file_probabilities(model, path, 4.0, 2.0)
    assert prediction.starts == [s / RATE for s, _ in bounds]
    assert prediction.ends == [min(e / RATE, prediction.duration) for _, e in bounds]
    assert len(bounds) == 1 or float(expected.std(dim=0).max()) > 1e-4  # windows differ
    torch.testing.assert_close(prediction.window_probabilities, expected, atol=1e-5, rtol=0)


def test_bad_samples_late_in_a_long_file_skip_it(tmp_path: Path, caplog):
    model = load_model(write_checkpoint(tmp_path / "tiny.ckpt"))
    wave = noise(70.0)
    wave[65 * RATE] = np.nan  # in the third block: windows of the first were already classified
    sf.write(tmp_path / "bad.wav", wave, RATE, subtype="FLOAT")
    sf.write(tmp_path / "good.wav", noise(5.0), RATE)
    predictions = predict_files(model, [tmp_path / "bad.wav", tmp_path / "good.wav"], batch_size=4)
    assert [p.path.name for p in predictions] == ["good.wav"]
    assert "bad.wav: holds NaN or infinite samples" in caplog.text


SPEECH = [("silence", 3.0), ("speech", 2.5), ("silence", 6.0), ("speech", 9.0), ("silence", 4.0)]


@pytest.mark.skipif(not HAS_VAD, reason="needs silero-vad (pip install 'ser[vad]')")
def test_vad_segments_only_where_speech_is(tmp_path: Path):
    path = tmp_path / "talk.wav"
    sf.write(path, speech_with_pauses(SPEECH, rate=48000), 48000)
    model = load_model(write_checkpoint(tmp_path / "tiny.ckpt"))
    (prediction,) = predict_files(model, [path], 4.0, 2.0, segments="vad")
    speech = [(3.0, 5.5), (11.5, 20.5)]
    assert len(prediction.segments) == 2
    for (start, end), (s, e) in zip(prediction.segments, speech, strict=True):
        assert abs(start - s) < 0.3 and abs(end - e) < 0.3
    # the short segment is one window, the long one windowed as a recording of its own
    assert prediction.starts[0] == pytest.approx(prediction.segments[0][0], abs=1e-3)
    assert len(prediction.starts) == 1 + len(window_bounds(round(9.0 * RATE), 4 * RATE, 2 * RATE))
    for start, end in zip(prediction.starts, prediction.ends, strict=True):
        assert any(s - 1e-3 <= start < end <= e + 1e-3 for s, e in prediction.segments)
    assert prediction.duration == pytest.approx(24.5)


@pytest.mark.skipif(not HAS_VAD, reason="needs silero-vad (pip install 'ser[vad]')")
def test_plot_marks_segments(tmp_path: Path, capsys):
    sf.write(tmp_path / "talk.wav", speech_with_pauses(SPEECH), RATE)
    sf.write(tmp_path / "short.wav", speech_with_pauses([("speech", 1.0)]), RATE)
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    ser_main(["predict", str(checkpoint), str(tmp_path / "talk.wav"), str(tmp_path / "short.wav"),
              "--segments", "vad", "--plot", str(tmp_path / "out.png")])  # fmt: skip
    assert f"wrote {tmp_path / 'out.png'}" in capsys.readouterr().out
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_an_image_name(tmp_path: Path):
    sf.write(tmp_path / "a.wav", noise(1.0), RATE)
    with pytest.raises(SERError, match="--plot .*out.txt: use a file name ending in .png"):
        predict_main([ str(write_checkpoint(tmp_path / "t.ckpt")), str(tmp_path / "a.wav"),
                  "--plot", str(tmp_path / "out.txt")])  # fmt: skip
