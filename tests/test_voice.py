"""The speaker-encoder front-end (ser.transforms.VoiceEmbedding) against resemblyzer's own code."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.errors import SERError
from ser.transforms.voice import VoiceEmbedding, package_weights

# find_spec runs none of the package (importing it needs webrtcvad, which may not import here)
if importlib.util.find_spec("resemblyzer") is None:
    pytest.skip("needs resemblyzer: pip install 'ser[voice]'", allow_module_level=True)
RATE = 16000


@pytest.fixture(scope="module")
def frontend() -> VoiceEmbedding:
    return VoiceEmbedding(RATE, level_dbfs=None)


@pytest.fixture(scope="module")
def library():
    """resemblyzer's VoiceEncoder: its package imports webrtcvad (for its own silence trimming,
    not used here), which may not import on this Python; a stand-in module lets it load."""
    try:
        importlib.import_module("webrtcvad")
    except ImportError:
        sys.modules["webrtcvad"] = types.ModuleType("webrtcvad")
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def speech_like(n: int, seed: int) -> np.ndarray:
    """A voiced, pitched, amplitude-modulated signal: not silence, not white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.1 * voiced * envelope + 0.005 * rng.standard_normal(n)).astype(np.float32)


def test_windows_and_embeddings_match_resemblyzer_in_a_padded_batch(frontend, library):
    """Each clip of a padded batch gets the partial-utterance embeddings that
    ``VoiceEncoder.embed_utterance`` gives it alone: the same windows, the same values."""
    lengths = [61929, 20000, 40000, 25600 + 2 * 77 * 160, 9000]
    clips = [speech_like(n, seed) for seed, n in enumerate(lengths)]
    wave = torch.zeros(len(clips), max(lengths))
    for i, clip in enumerate(clips):
        wave[i, : len(clip)] = torch.from_numpy(clip)
    out, counts = frontend(wave, torch.tensor(lengths))
    for i, clip in enumerate(clips):
        _, partials, _ = library.embed_utterance(clip, return_partials=True)
        assert int(counts[i]) == len(partials)
        np.testing.assert_allclose(out[i, :, : len(partials)].T.numpy(), partials, atol=1e-5)
        assert torch.all(out[i, :, len(partials) :] == 0)  # windows past the clip stay zero


def test_window_count_is_resemblyzers_for_every_length(frontend, library):
    for n in [1, 159, 160, 16000, 25599, 25600, 25601, 37919, 37920, 37921, 80000]:
        slices, _ = library.compute_partial_slices(n, 1.3, 0.75)
        assert frontend.output_frames(n) == len(slices), n


def test_a_recording_gain_does_not_change_the_embedding():
    frontend = VoiceEmbedding(RATE)  # level_dbfs -30: each clip brought to one level
    clip = torch.from_numpy(speech_like(32000, 3))[None]
    lengths = torch.tensor([32000])
    quiet, _ = frontend(0.1 * clip, lengths)
    loud, _ = frontend(3.0 * clip, lengths)
    torch.testing.assert_close(quiet, loud, atol=1e-4, rtol=1e-4)
    raw, _ = VoiceEmbedding(RATE, level_dbfs=None)(0.1 * clip, lengths)
    assert (raw - quiet).abs().max() > 1e-2  # the level does matter to the encoder itself


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sample_rate": 22050}, "VoiceEmbedding takes 16000 Hz audio; set --data.sample_rate 16000"),
     ({"rate": 0.5}, r"rate \(0.5\) must be at least 0.625 windows per second"),
     ({"min_coverage": 0.0}, r"0 < min_coverage \(0.0\) <= 1"),
     ({"weights": "/nonexistent/voice.pt"}, "weights file /nonexistent/voice.pt not found"),
     ({"weights_sha256": "0" * 16}, "not the voice encoder weights this model was trained with")],
)  # fmt: skip
def test_bad_settings_are_one_line(kwargs: dict, message: str):
    with pytest.raises(SERError, match=message):
        VoiceEmbedding(**{"sample_rate": RATE, **kwargs})


def test_other_weights_are_refused_by_name(tmp_path: Path):
    """A tensor file of another network, and a pickle that would run code, each one line."""
    other = tmp_path / "other.pt"
    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(3, 3)}}, other)
    with pytest.raises(SERError, match="not resemblyzer's voice encoder weights"):
        VoiceEmbedding(RATE, weights=str(other))
    code = tmp_path / "code.pt"
    torch.save({"model_state": Path("x")}, code)  # a Python object: refused, never unpickled
    with pytest.raises(SERError, match="pickled Python objects"):
        VoiceEmbedding(RATE, weights=str(code))
    assert package_weights().is_file()


def voice_checkpoint(path: Path) -> Path:
    """A checkpoint of a small head on the speaker encoder, normalised by stored population
    statistics (what a speaker-normalised model applies to an unknown speaker)."""
    from ser.models import EncoderHead
    from ser.pretrained import weights_hash

    from .helpers import save_checkpoint

    torch.manual_seed(0)
    net = EncoderHead(4, 256, RATE, pooling="mean", hidden=16)
    frontend = {"class_path": "ser.transforms.VoiceEmbedding",
                "init_args": {"weights_sha256": weights_hash(package_weights())}}  # fmt: skip
    population = {"mean": (torch.rand(256) * 0.05).tolist(),
                  "std": (torch.rand(256) * 0.05 + 0.01).tolist()}  # fmt: skip
    pipeline = {"frontend": frontend, "denoise": None,
                "normalization": {"level": "speaker", "scale": True, "population": population}}  # fmt: skip
    return save_checkpoint(path, net.eval(), "ser.models.EncoderHead",
                           {"pooling": "mean", "hidden": 16}, pipeline, 256)  # fmt: skip


@pytest.mark.slow  # the ONNX export of the LSTM takes most of a minute
def test_a_voice_model_exports_to_onnx_as_its_checkpoint(tmp_path: Path):
    from ser.inference.export import export

    figures = export(voice_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out", ["onnx"])
    assert figures["onnx"] and max(figures["onnx"]) < 1e-4, figures


def test_a_voice_model_exports_and_predicts_as_its_checkpoint(tmp_path: Path):
    """The whole chain (speaker encoder, population normalisation, head) as one TorchScript
    graph that keeps any batch and length, like the checkpoint."""
    from ser.inference import load_model
    from ser.inference.export import example_waveform, export

    checkpoint = voice_checkpoint(tmp_path / "m.ckpt")
    figures = export(checkpoint, tmp_path / "out", ["torchscript"])
    assert all(max(figures[f]) < 1e-4 for f in figures), figures
    scripted = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    model = load_model(checkpoint)
    wave = example_waveform(RATE, 4.2, 3, seed=2)  # another batch and length than traced
    with torch.inference_mode():
        expected = model(wave)
        torch.testing.assert_close(scripted(wave), expected, atol=1e-4, rtol=1e-4)
    assert expected.std(0).max() > 1e-3  # the clips get different answers
