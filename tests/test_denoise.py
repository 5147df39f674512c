"""Spectral gating lowers the noise floor of a noisy tone and keeps the tone."""

import math
from pathlib import Path

import pytest
import torch

from ser.audio import RESAMPLER
from ser.data import RAVDESS
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.transforms.denoise import Denoise, SpectralGate, reduce_noise

from .helpers import write_checkpoint

SR = 16000
TONE_HZ = 1000.0


def noisy_tone(seconds: float = 2.4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1 kHz tone bursts (0.15 s each second, sparse in time like speech in one frequency band) in
    white noise; returns the clean and the noisy signal."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    clean = 0.3 * torch.sin(2 * math.pi * TONE_HZ * t) * tone_on(t)
    return clean, clean + 0.05 * torch.randn(t.shape, generator=g)


def tone_on(t: torch.Tensor) -> torch.Tensor:
    return (t % 1.0) > 0.85


def db(x: torch.Tensor) -> float:
    return 10 * math.log10(float(x.pow(2).mean()))


def check_denoised(clean: torch.Tensor, noisy: torch.Tensor, out: torch.Tensor) -> None:
    on = tone_on(torch.arange(len(clean)) / SR)
    assert db(out[~on]) < db(noisy[~on]) - 10  # the noise floor drops by more than 10 dB
    snr_in, snr_out = db(noisy[on]) - db(noisy[~on]), db(out[on]) - db(out[~on])
    assert snr_out > snr_in + 4
    corr = (out[on] * clean[on]).sum() / (out[on].norm() * clean[on].norm())
    assert corr > 0.8  # the tone is still there, in phase


@pytest.mark.parametrize("mode", ["stationary", "nonstationary"])
def test_noisereduce_per_clip(mode):
    clean, noisy = noisy_tone()
    out = reduce_noise(noisy, SR, mode)
    assert out.shape == noisy.shape and out.dtype == torch.float32
    check_denoised(clean, noisy, out)


@pytest.mark.parametrize("mode", ["stationary", "nonstationary"])
def test_torchgate_on_a_padded_batch(mode):
    clean_a, a = noisy_tone(2.4, seed=1)
    clean_b, b = noisy_tone(2.0, seed=2)
    batch = torch.zeros(2, len(a))
    batch[0], batch[1, : len(b)] = a, b
    lengths = torch.tensor([len(a), len(b)])
    out = SpectralGate(SR, mode)(batch, lengths)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert (out[1, len(b) :] == 0).all()
    check_denoised(clean_a, a, out[0])
    check_denoised(clean_b, b, out[1, : len(b)])
    alone = SpectralGate(SR, mode)(b[None], lengths[1:])
    # Padding changes a clip's result only near its end (the gate's smoothing windows).
    assert torch.allclose(alone[0, : len(b) - 8192], out[1, : len(b) - 8192], atol=1e-3)


def test_denoise_settings_key_the_decode_and_fail_early(ravdess_root: Path):
    plain = RAVDESS(root=str(ravdess_root))
    assert plain.decode_settings() == {"sample_rate": 16000, "resampler": RESAMPLER}
    dm = RAVDESS(root=str(ravdess_root), denoise=Denoise("stationary", prop_decrease=0.8))
    assert dm.decode_settings() == {
        "sample_rate": 16000, "resampler": RESAMPLER, "denoise": "stationary",
        "denoise_prop_decrease": 0.8,
    }  # fmt: skip
    path = next(ravdess_root.rglob("*.wav"))
    assert not torch.equal(dm.decode(path), plain.decode(path))
    on_device = RAVDESS(root=str(ravdess_root), denoise=Denoise("stationary", where="device"))
    assert on_device.decode_settings() == {"sample_rate": 16000, "resampler": RESAMPLER}
    assert on_device.pipeline.gate is not None
    with pytest.raises(SERError, match="prop_decrease=2.0"):
        RAVDESS(root=str(ravdess_root), denoise=Denoise("stationary", prop_decrease=2.0))


def test_device_gate_runs_in_every_stage(ravdess_root: Path):
    split = SplitSpec(fold=0, n_folds=3)
    plain = RAVDESS(root=str(ravdess_root), split=split, batch_size=4)
    gated = RAVDESS(root=str(ravdess_root), split=split, batch_size=4,
                    denoise=Denoise("stationary", where="device"))  # fmt: skip
    plain.setup("fit")
    batch = next(iter(plain.val_dataloader()))
    a = plain.on_after_batch_transfer(dict(batch), 0)
    b = gated.on_after_batch_transfer(dict(batch), 0)  # no trainer: evaluation and inference
    assert a["features"].shape == b["features"].shape
    # The features are those of the gated waveform, whose noise floor is lower.
    wave, lengths = batch["waveform"], batch["lengths"]
    gated_wave = SpectralGate(16000, "stationary")(wave, lengths)
    assert not torch.equal(gated_wave, wave)
    assert gated_wave.abs().sum() < wave.abs().sum()  # the noise floor is gated
    expected, expected_lengths = gated.pipeline.frontend(gated_wave, lengths)
    torch.testing.assert_close(b["features"], expected)
    assert torch.equal(b["feature_lengths"], expected_lengths)
    assert not torch.allclose(a["features"], b["features"], atol=1e-3)


@pytest.mark.parametrize("mode", ["stationary", "nonstationary"])
def test_spectral_gate_equals_torchgate_on_full_length_clips(mode):
    from noisereduce.torchgate import TorchGate

    x = torch.randn(3, 24000, generator=torch.Generator().manual_seed(0)) * 0.1
    reference = TorchGate(SR, nonstationary=mode == "nonstationary")(x)  # (3, 23936): whole hops
    ours = SpectralGate(SR, mode)(x)
    assert ours.shape == x.shape
    assert torch.allclose(ours[:, : reference.shape[1]], reference, atol=1e-6)


@pytest.mark.parametrize("mode", ["stationary", "nonstationary"])
def test_cpu_chunks_give_the_whole_batch_result(mode):
    """A CPU batch goes through in chunks cut after their longest clip: the same clips, the same
    output as gating the whole padded batch at once, and zero padding."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4000, 24000, (9,), generator=g)
    batch = torch.randn(9, 24000, generator=g) * 0.1
    batch[torch.arange(24000) >= lengths[:, None]] = 0
    chunked = SpectralGate(SR, mode)
    assert len(batch) > chunked.CPU_CHUNK
    whole = SpectralGate(SR, mode)
    whole.CPU_CHUNK = len(batch)
    a, b = chunked(batch, lengths), whole(batch, lengths)
    assert (a[torch.arange(24000) >= lengths[:, None]] == 0).all()
    assert torch.allclose(a, b, atol=1e-6)


def test_a_model_with_the_device_gate_exports_to_torchscript_and_refuses_onnx(
    tmp_path: Path, capsys
):
    """The gate traces into TorchScript (its parity checked by the export); ONNX's exporter never
    finishes on it, so ONNX is skipped with a note by default and refused when asked for."""
    from ser.inference.export import export

    checkpoint = write_checkpoint(tmp_path / "m.ckpt", denoise={"where": "device"})
    figures = export(checkpoint, tmp_path / "out")
    assert set(figures) == {"torchscript"} and max(figures["torchscript"]) < 1e-4
    assert "skipping ONNX. ONNX export of a model with noise reduction on the device" in (
        capsys.readouterr().err
    )
    with pytest.raises(SERError, match="noise reduction on the device .* not supported"):
        export(checkpoint, tmp_path / "onnx", ["onnx"])
    assert not (tmp_path / "onnx" / "model.onnx").exists()
