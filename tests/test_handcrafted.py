import librosa
import numpy as np
import pytest
import torch

from ser.errors import SERError
from ser.transforms import Handcrafted
from ser.transforms.handcrafted import (
    DEFAULT_FEATURES,
    S4_BANDS,
    autocorrelation_pitch,
    band_energy_ratio,
    band_masks,
    delta,
    rms,
    spectral_bandwidth,
    spectral_centroid,
    zero_crossing_rate,
)

SR, N_FFT, HOP = 16000, 512, 160


@pytest.fixture
def signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    chirp = np.sin(2 * np.pi * (200 + 600 * t) * t)
    wave = 0.5 * chirp + 0.05 * rng.standard_normal(t.size)
    wave[6000:7000] = 0.0  # a stretch of digital silence inside
    return wave.astype(np.float32)


def magnitude(signal: np.ndarray) -> np.ndarray:
    return np.abs(librosa.stft(signal, n_fft=N_FFT, hop_length=HOP, win_length=400))


def torch_magnitude(signal: np.ndarray) -> torch.Tensor:
    return torch.stft(
        torch.from_numpy(signal)[None], N_FFT, HOP, 400, torch.hann_window(400),
        center=True, pad_mode="constant", return_complex=True,
    ).abs()  # fmt: skip


def test_zcr_and_rms_match_librosa(signal):
    wave = torch.from_numpy(signal)[None]
    zcr = zero_crossing_rate(wave, N_FFT, HOP)[0].numpy()
    ref = librosa.feature.zero_crossing_rate(signal, frame_length=N_FFT, hop_length=HOP)[0]
    np.testing.assert_allclose(zcr, ref, atol=1e-6)
    ref = librosa.feature.rms(y=signal, frame_length=N_FFT, hop_length=HOP)[0]
    np.testing.assert_allclose(rms(wave, N_FFT, HOP)[0].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_centroid_and_bandwidth_match_librosa(signal):
    mag = torch_magnitude(signal)
    freqs = torch.linspace(0, SR / 2, N_FFT // 2 + 1)
    whole = band_masks(freqs, None)
    ref = librosa.feature.spectral_centroid(S=magnitude(signal), sr=SR, n_fft=N_FFT)[0]
    ours = spectral_centroid(mag, freqs, whole)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=0.5)
    ref = librosa.feature.spectral_bandwidth(S=magnitude(signal), sr=SR, n_fft=N_FFT)[0]
    ours = spectral_bandwidth(mag, freqs, whole)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1.0)


def test_band_features_against_numpy(signal):
    mag = torch_magnitude(signal)
    freqs = torch.linspace(0, SR / 2, N_FFT // 2 + 1)
    masks = band_masks(freqs, S4_BANDS)
    power = magnitude(signal) ** 2
    f = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    ratio = band_energy_ratio(mag.pow(2), masks)[0].numpy()  # (5, F)
    voiced = power.sum(0) > 0
    for k, (lo, hi) in enumerate(S4_BANDS):
        inside = (f >= lo) & (f <= hi)
        expected = power[inside].sum(0)[voiced] / power.sum(0)[voiced]
        np.testing.assert_allclose(ratio[k][voiced], expected, rtol=1e-3, atol=1e-6)
        centroid = spectral_centroid(mag, freqs, masks)[0, k].numpy()
        mag_k = magnitude(signal)[inside]
        expected = (f[inside, None] * mag_k).sum(0) / np.maximum(mag_k.sum(0), 1e-10)
        np.testing.assert_allclose(centroid, expected, rtol=1e-3, atol=0.5)


def test_pitch_matches_librosa_yin_on_tones():
    t = np.arange(SR) / SR
    for f0 in (110.0, 220.0, 330.0):
        wave = (0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
        ours = autocorrelation_pitch(torch.from_numpy(wave)[None], SR, N_FFT, HOP)[0].numpy()
        ref = librosa.yin(wave, fmin=60, fmax=500, sr=SR, frame_length=N_FFT, hop_length=HOP)
        middle = slice(5, -5)  # edge frames are half padding
        assert np.median(ours[middle]) == pytest.approx(np.median(ref[middle]), rel=0.02)
        assert np.median(ours[middle]) == pytest.approx(f0, rel=0.02)


def test_delta_matches_librosa():
    x = np.random.default_rng(1).standard_normal((3, 40)).astype(np.float32)
    ours = delta(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, librosa.feature.delta(x, mode="nearest"), atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        delta(torch.from_numpy(x), width=4)


#: The stacks the old feature names stood for: zcr_rms, spectral and handcrafted (the default).
STACKS = {
    "zcr_rms": ["zcr", "rms"],
    "spectral": ["band_centroid", "band_bandwidth", "band_energy"],
    "handcrafted": DEFAULT_FEATURES,
}


@pytest.mark.parametrize("name", list(STACKS))
def test_frontends_are_finite_and_zero_on_silence(name):
    frontend = Handcrafted(SR, STACKS[name], normalize=False)
    wave = torch.zeros(2, 8000)
    wave[1, :4000] = torch.randn(4000) * 0.1
    x, frames = frontend(wave, torch.tensor([8000, 4000]))
    assert x.shape == (2, frontend.n_features, 8000 // HOP + 1)
    assert frames.tolist() == [51, 26]
    assert torch.isfinite(x).all()
    values = frontend.compute(wave[:1])
    for feature in ("zcr", "centroid", "bandwidth", "band_energy_ratio", "pitch", "band_centroid"):
        if feature in values:
            assert values[feature].abs().max() == 0, feature  # guarded divisions: 0, not NaN


def test_handcrafted_layout_and_normalisation():
    frontend = Handcrafted(SR, ["mfcc", "pitch", "band_energy_ratio"], n_mfcc=13)
    assert frontend.n_features == 13 + 1 + 5
    wave = torch.randn(2, 16000) * 0.1
    x, frames = frontend(wave, torch.tensor([16000, 8000]))
    valid = x[1, :, : int(frames[1])]
    torch.testing.assert_close(valid.mean(-1), torch.zeros(19), atol=1e-4, rtol=0)
    assert x[1, :, int(frames[1]) :].abs().max() == 0  # padding zeroed


def test_bad_options_are_named():
    with pytest.raises(SERError, match="unknown features"):
        Handcrafted(SR, ["zcr", "loudness"])
    with pytest.raises(SERError, match="bands"):
        Handcrafted(SR, ["band_energy"], bands=[(3000.0, 9000.0)])
    with pytest.raises(ValueError, match="pitch range"):
        autocorrelation_pitch(torch.zeros(1, 1000), SR, 64, 32, f_min=60.0)
