"""Hand-crafted frame features, batched in torch on any device.

Functions compute one feature on a batch and match librosa where librosa has it (centred frames,
Hann window, constant padding). :class:`Handcrafted` stacks a selection of them as a front-end:
``(waveform (B, T), lengths (B,)) -> (features (B, n_features, F), feature_lengths (B,))`` with
``F = T // hop + 1``, the frames of :class:`~ser.transforms.frontends.LogMel`.

Every division is guarded: digital silence gives zeros (no NaN), as librosa does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ser.errors import SERError
from ser.transforms.frontends import MFCC

EPS = 1e-10

#: Seed S4's five sub-bands over the telephone band 300-3400 Hz (Hz, inclusive).
S4_BANDS: list[tuple[float, float]] = [
    (300.0, 627.0), (628.0, 1060.0), (1061.0, 1633.0), (1634.0, 2393.0), (2394.0, 3400.0),
]  # fmt: skip

Feature = Literal[
    "zcr", "rms", "centroid", "bandwidth", "band_energy", "band_energy_ratio",
    "band_centroid", "band_bandwidth", "pitch", "mfcc", "mfcc_delta",
]  # fmt: skip

#: Seed S2's stack: MFCC (+ deltas), pitch, band energy ratio, spectral centroid; plus ZCR, RMS
#: and bandwidth.
DEFAULT_FEATURES: list[str] = [
    "mfcc", "mfcc_delta", "zcr", "rms", "centroid", "bandwidth", "band_energy_ratio", "pitch",
]  # fmt: skip


def frame(wave: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Centred frames, zero-padded by ``frame_length // 2`` at both ends, as librosa's ``center``.

    Shapes: ``(B, T) -> (B, F, frame_length)`` with ``F = 1 + T // hop_length`` (even length).
    """
    pad = frame_length // 2
    return F.pad(wave, (pad, pad)).unfold(-1, frame_length, hop_length)


def zero_crossing_rate(wave: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Share of sign changes per frame, as ``librosa.feature.zero_crossing_rate`` (edge padding,
    values within 1e-10 of zero count as positive). ``(B, T) -> (B, F)``."""
    pad = frame_length // 2
    frames = F.pad(wave[:, None], (pad, pad), mode="replicate")[:, 0].unfold(
        -1, frame_length, hop_length
    )  # (B, F, N)
    negative = frames < -1e-10
    return (negative[..., 1:] != negative[..., :-1]).sum(-1).to(wave.dtype) / frame_length


def rms(wave: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Root mean square per frame, as ``librosa.feature.rms`` (constant padding). ``(B, T) -> (B, F)``."""
    return frame(wave, frame_length, hop_length).pow(2).mean(-1).sqrt()


def band_masks(freqs: torch.Tensor, bands: list[tuple[float, float]] | None) -> torch.Tensor:
    """``(n_bands, n_freq)`` float mask of the FFT bins inside each ``(low, high)`` band (Hz,
    inclusive); ``None``: one band, the whole spectrum."""
    if bands is None:
        return torch.ones(1, freqs.numel(), dtype=freqs.dtype, device=freqs.device)
    return torch.stack([(freqs >= lo) & (freqs <= hi) for lo, hi in bands]).to(freqs.dtype)


def spectral_centroid(
    magnitude: torch.Tensor, freqs: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Magnitude-weighted mean frequency in each band, as ``librosa.feature.spectral_centroid``
    when the band is the whole spectrum. ``(B, n_freq, F) -> (B, n_bands, F)`` in Hz; 0 on silence."""
    weight = torch.einsum("kf,bft->bkt", masks, magnitude)  # (B, n_bands, F)
    moment = torch.einsum("kf,bft->bkt", masks * freqs, magnitude)
    return moment / weight.clamp(min=EPS)


def spectral_bandwidth(
    magnitude: torch.Tensor, freqs: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Magnitude-weighted standard deviation of frequency around the centroid in each band, as
    ``librosa.feature.spectral_bandwidth`` (p=2). ``(B, n_freq, F) -> (B, n_bands, F)`` in Hz."""
    centroid = spectral_centroid(magnitude, freqs, masks)  # (B, K, F)
    weight = torch.einsum("kf,bft->bkt", masks, magnitude).clamp(min=EPS)
    # sum_f w (f - c)^2 = sum_f w f^2 - 2 c sum_f w f + c^2 sum_f w, per band and frame
    m2 = torch.einsum("kf,bft->bkt", masks * freqs**2, magnitude) / weight
    return (m2 - centroid**2).clamp(min=0).sqrt()


def band_energy(power: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Summed power of the bins in each band. ``(B, n_freq, F) -> (B, n_bands, F)``."""
    return torch.einsum("kf,bft->bkt", masks, power)


def band_energy_ratio(power: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the frame's total power in each band; 0 on silence. ``(B, n_bands, F)``."""
    return band_energy(power, masks) / power.sum(1, keepdim=True).clamp(min=EPS)


def autocorrelation_pitch(
    wave: torch.Tensor,
    sample_rate: int,
    frame_length: int,
    hop_length: int,
    f_min: float = 60.0,
    f_max: float = 500.0,
    threshold: float = 0.3,
) -> torch.Tensor:
    """Fundamental frequency per frame from the normalised autocorrelation peak (Hz; 0 where the
    frame is unvoiced or silent). ``(B, T) -> (B, F)``.

    Args:
        f_min: lowest pitch searched (Hz); its period must fit in ``frame_length``.
        f_max: highest pitch searched (Hz).
        threshold: a frame is voiced when its peak autocorrelation, relative to lag 0, exceeds this.
    """
    min_lag = max(1, int(sample_rate / f_max))
    max_lag = int(sample_rate / f_min)
    if not min_lag < max_lag < frame_length:
        raise ValueError(
            f"pitch range {f_min}-{f_max} Hz does not fit a {frame_length}-sample frame at "
            f"{sample_rate} Hz; lower f_min or lengthen the window"
        )
    frames = frame(wave, frame_length, hop_length)  # (B, F, N)
    frames = frames - frames.mean(-1, keepdim=True)
    spectrum = torch.fft.rfft(frames, n=2 * frame_length)
    # The biased autocorrelation tapers with the lag, so the true period beats its multiples.
    acf = torch.fft.irfft(spectrum.abs().pow(2), n=2 * frame_length)[..., :frame_length]
    energy = acf[..., :1]  # (B, F, 1)
    normalised = acf[..., min_lag : max_lag + 1] / energy.clamp(min=EPS)
    peak, lag = normalised.max(-1)  # (B, F)
    pitch = sample_rate / (lag + min_lag).to(wave.dtype)
    voiced = (peak > threshold) & (energy[..., 0] > EPS)
    return torch.where(voiced, pitch, torch.zeros_like(pitch))


def delta(x: torch.Tensor, width: int = 9) -> torch.Tensor:
    """First-order regression deltas over the last axis with edge replication, as
    ``librosa.feature.delta(x, width=width, mode="nearest")``. ``(..., F) -> (..., F)``."""
    if width < 3 or width % 2 == 0:
        raise ValueError(f"delta width must be odd and >= 3, got {width}")
    half = width // 2
    shape = x.shape
    flat = F.pad(x.reshape(-1, 1, shape[-1]), (half, half), mode="replicate")  # (N, 1, F + 2h)
    n = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    kernel = (n / n.pow(2).sum())[None, None]  # conv1d correlates: sum_n n * x[t + n]
    return F.conv1d(flat, kernel).reshape(shape)


class Handcrafted(nn.Module):
    """A stack of hand-crafted frame features as a front-end.

    Scales keep the channels comparable: RMS and band energies in dB, frequencies (centroid,
    bandwidth, pitch) in kHz, ZCR and ratios as they are, MFCC as :class:`MFCC`.

    Args:
        sample_rate: audio sample rate (Hz).
        features: which features, stacked in this order. Per-band ones give one channel per band.
        bands: ``(low, high)`` sub-bands in Hz of the ``band_*`` features (default: seed S4's five
            bands over 300-3400 Hz).
        n_mfcc: MFCC coefficients (``mfcc``, ``mfcc_delta``).
        n_mels: mel bands under the MFCC.
        win_ms: analysis window (ms); the FFT size and time-domain frames are the next power of two.
        hop_ms: hop between frames (ms).
        pitch_range: ``(f_min, f_max)`` of the pitch search (Hz).
        normalize: standardise each channel of each clip over its valid frames (per-clip CMVN).

    Shapes: ``(B, T), (B,) -> (B, n_features, F), (B,)``.
    """

    def __init__(
        self,
        sample_rate: int,
        features: list[Feature] = DEFAULT_FEATURES,  # noqa: B006 - read-only literal
        bands: list[tuple[float, float]] = S4_BANDS,  # noqa: B006 - read-only literal
        n_mfcc: int = 40,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        pitch_range: tuple[float, float] = (60.0, 500.0),
        normalize: bool = True,
    ) -> None:
        super().__init__()
        unknown = sorted(set(features) - set(Feature.__args__))
        if unknown or not features:
            raise SERError(f"unknown features {unknown}; choose from {list(Feature.__args__)}")
        if any(not 0 <= lo < hi <= sample_rate / 2 for lo, hi in bands):
            raise SERError(f"bands {bands} must satisfy 0 <= low < high <= {sample_rate / 2} Hz")
        self.features, self.bands = list(features), [tuple(b) for b in bands]
        self.sample_rate, self.pitch_range, self.normalize = sample_rate, pitch_range, normalize
        self.mfcc = MFCC(
            sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms,
            normalize=False,
        )  # fmt: skip
        self.n_fft, self.hop_length = self.mfcc.n_fft, self.mfcc.hop_length
        self.win_length = self.mfcc.win_length
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        freqs = torch.linspace(0, sample_rate / 2, self.n_fft // 2 + 1)
        self.register_buffer("freqs", freqs, persistent=False)
        self.register_buffer("all_band", band_masks(freqs, None), persistent=False)
        self.register_buffer("band_masks", band_masks(freqs, self.bands), persistent=False)
        sizes = {"mfcc": n_mfcc, "mfcc_delta": n_mfcc}
        per_band = len(self.bands)
        self.sizes = [sizes.get(f, per_band if f.startswith("band_") else 1) for f in self.features]
        self.n_features = sum(self.sizes)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames that hold signal for clips of ``lengths`` samples."""
        return self.mfcc.frames(lengths)

    def compute(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each selected feature of ``wave`` (B, T) as ``(B, channels, F)``, unscaled units."""
        want = set(self.features)
        out: dict[str, torch.Tensor] = {}
        n, hop = self.n_fft, self.hop_length
        if want & {"centroid", "bandwidth", "band_energy", "band_energy_ratio",
                   "band_centroid", "band_bandwidth"}:  # fmt: skip
            stft = torch.stft(
                wave, n, hop, self.win_length, self.window, center=True, pad_mode="constant",
                return_complex=True,
            )  # fmt: skip
            magnitude = stft.abs()  # (B, n_freq, F)
            power = magnitude.pow(2)
            if "centroid" in want:
                out["centroid"] = spectral_centroid(magnitude, self.freqs, self.all_band)
            if "bandwidth" in want:
                out["bandwidth"] = spectral_bandwidth(magnitude, self.freqs, self.all_band)
            if "band_centroid" in want:
                out["band_centroid"] = spectral_centroid(magnitude, self.freqs, self.band_masks)
            if "band_bandwidth" in want:
                out["band_bandwidth"] = spectral_bandwidth(magnitude, self.freqs, self.band_masks)
            if "band_energy" in want:
                out["band_energy"] = band_energy(power, self.band_masks)
            if "band_energy_ratio" in want:
                out["band_energy_ratio"] = band_energy_ratio(power, self.band_masks)
        if "zcr" in want:
            out["zcr"] = zero_crossing_rate(wave, n, hop)[:, None]
        if "rms" in want:
            out["rms"] = rms(wave, n, hop)[:, None]
        if "pitch" in want:
            out["pitch"] = autocorrelation_pitch(wave, self.sample_rate, n, hop, *self.pitch_range)[
                :, None
            ]
        if want & {"mfcc", "mfcc_delta"}:
            mfcc = self.mfcc.log_mel(wave)  # (B, n_mfcc, F)
            out["mfcc"] = mfcc
            if "mfcc_delta" in want:
                out["mfcc_delta"] = delta(mfcc)
        return out

    @staticmethod
    def scale(name: str, x: torch.Tensor) -> torch.Tensor:
        """Bring a feature to a scale comparable with the others (dB, kHz)."""
        if name == "rms":
            return 20.0 * torch.log10(x + 1e-5)
        if name == "band_energy":
            return 10.0 * torch.log10(x + EPS)
        if name in ("centroid", "bandwidth", "band_centroid", "band_bandwidth", "pitch"):
            return x / 1000.0
        return x

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.compute(wave)
        x = torch.cat([self.scale(name, values[name]) for name in self.features], dim=1)
        frames = self.frames(lengths).clamp(max=x.shape[-1])
        if self.normalize:
            x = standardize_channels(x, frames)
        return x, frames  # (B, n_features, F), (B,)


def standardize_channels(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Give each channel of each clip of ``x`` (B, C, F) mean 0, std 1 over its valid frames; zero
    the padding. Constant channels (silence) become 0."""
    mask = (torch.arange(x.shape[-1], device=x.device) < lengths[:, None])[:, None, :]  # (B, 1, F)
    count = lengths.clamp(min=1).to(x.dtype)[:, None, None]  # (B, 1, 1)
    mean = (x * mask).sum(-1, keepdim=True) / count  # (B, C, 1)
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / count
    return (x - mean) / (var + 1e-5).sqrt() * mask
