"""Noise reduction by spectral gating (noisereduce), per clip at decode time or batched on a device.

- :class:`Denoise`: the settings, as the feature pipeline and the checkpoint carry them.
- :func:`reduce_noise`: ``noisereduce.reduce_noise`` on one clip, the seeds' preprocessing (S0);
  applied when a recording is read, so its output is cached with the decoded audio.
- :class:`SpectralGate`: noisereduce's torch implementation (``TorchGate``) on a zero-padded batch
  with valid lengths, on any device; the stationary noise statistics use each clip's valid frames
  only, so padding does not pull the noise floor down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from noisereduce import reduce_noise as nr_reduce_noise
from noisereduce.torchgate import TorchGate
from noisereduce.torchgate.utils import amp_to_db
from torch.nn import functional as F

from ser.errors import SERError

DenoiseMode = Literal["stationary", "nonstationary"]


def check_denoise(mode: str | None, prop_decrease: float) -> None:
    if mode not in (None, "stationary", "nonstationary"):
        raise SERError(f"denoise mode={mode!r}: choose stationary or nonstationary")
    if not 0.0 <= prop_decrease <= 1.0:
        raise SERError(f"denoise prop_decrease={prop_decrease} must be in [0, 1]")


@dataclass
class Denoise:
    """Spectral-gating noise reduction (noisereduce), part of the feature pipeline.

    Args:
        mode: ``stationary`` (one noise profile per clip) or ``nonstationary`` (a running one).
        prop_decrease: share of the gated noise removed (1: all).
        where: ``decode``: per recording with ``noisereduce.reduce_noise`` when audio is read (cached
            with the decoded audio); ``device``: batched with TorchGate on the batch's device.
    """

    mode: DenoiseMode = "stationary"
    prop_decrease: float = 1.0
    where: Literal["decode", "device"] = "decode"

    def __post_init__(self) -> None:
        check_denoise(self.mode, self.prop_decrease)
        if self.where not in ("decode", "device"):
            raise SERError(f"denoise where={self.where!r}: choose decode or device")

    def recording(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One ``(n_samples,)`` recording as it is read: noise-reduced when ``where`` is ``decode``."""
        if self.where != "decode":
            return wave
        return reduce_noise(wave, sample_rate, self.mode, self.prop_decrease)

    def gate(self, sample_rate: int) -> SpectralGate | None:
        """The batched gate when ``where`` is ``device``, else ``None``."""
        if self.where != "device":
            return None
        return SpectralGate(sample_rate, self.mode, self.prop_decrease)


def reduce_noise(
    wave: torch.Tensor, sample_rate: int, mode: DenoiseMode, prop_decrease: float = 1.0
) -> torch.Tensor:
    """Spectral gating of one ``(n_samples,)`` clip with ``noisereduce.reduce_noise``.

    Args:
        wave: mono waveform.
        sample_rate: its rate (Hz).
        mode: ``stationary`` (one noise profile per clip) or ``nonstationary`` (a running one).
        prop_decrease: how much of the gated noise is removed (1: all).
    """
    check_denoise(mode, prop_decrease)
    out = nr_reduce_noise(
        y=wave.numpy(), sr=sample_rate, stationary=mode == "stationary", prop_decrease=prop_decrease
    )
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


class SpectralGate(TorchGate):
    """``noisereduce.torchgate.TorchGate`` on a padded batch: ``(B, T), (B,) -> (B, T)``.

    Args:
        sample_rate: audio rate (Hz).
        mode: ``stationary`` or ``nonstationary`` gating.
        prop_decrease: how much of the gated noise is removed (1: all).
        n_fft: FFT size of the gate's STFT.
    """

    #: Clips gated at once on a CPU: the spectrogram of a few clips stays in cache, faster than
    #: whole batches (benchmarks/data_path.py measures it).
    CPU_CHUNK = 4

    def __init__(
        self,
        sample_rate: int,
        mode: DenoiseMode = "stationary",
        prop_decrease: float = 1.0,
        n_fft: int = 1024,
    ) -> None:
        check_denoise(mode, prop_decrease)
        super().__init__(
            sample_rate, nonstationary=mode == "nonstationary", prop_decrease=prop_decrease,
            n_fft=n_fft,
        )  # fmt: skip
        self._frames: torch.Tensor | None = None  # (B, 1, F) valid STFT frames of the batch

    def _stationary_mask(self, X_db: torch.Tensor, xn: torch.Tensor | None = None) -> torch.Tensor:
        if self._frames is None or xn is not None:
            return super()._stationary_mask(X_db, xn)
        # Mean and std of each frequency bin over the clip's valid frames. X_db: (B, n_bins, F)
        valid = self._frames.to(X_db.dtype)
        count = valid.sum(-1).clamp(min=2)  # (B, 1)
        mean = (X_db * valid).sum(-1) / count  # (B, n_bins)
        std = ((((X_db - mean[..., None]) * valid) ** 2).sum(-1) / (count - 1)).sqrt()
        threshold = mean + std * self.n_std_thresh_stationary
        return X_db > threshold[..., None]

    def _nonstationary_mask(self, X_abs: torch.Tensor) -> torch.Tensor:
        # TorchGate's running mean over time (its conv1d with a box of n_movemean frames, "same"
        # padding) as a box sum; clamped because a float32 running sum can go a hair below 0.
        n = self.n_movemean_nonstationary
        X_smoothed = box_sum(X_abs, n, -1).div_(n).clamp_(min=0)
        # TorchGate divides by the smoothed magnitude, which is 0 in digital silence (padding).
        # Its slowness ratio and temperature sigmoid, in place: this runs over every bin.
        slowness_ratio = (X_abs - X_smoothed).div_(X_smoothed.add_(1e-8))
        return (
            slowness_ratio.sub_(self.n_thresh_nonstationary)
            .div_(self.temp_coeff_nonstationary)
            .sigmoid_()
        )

    def _smooth(self, mask: torch.Tensor) -> torch.Tensor:
        """TorchGate's 2D mask smoothing of ``(B, n_bins, F)``. Its filter is the outer product of two
        triangles, and a triangle of ``2n + 1`` taps is two boxes of ``n + 1``: four box sums."""
        if self.smoothing_filter is None:
            return mask
        kernel = self.smoothing_filter[0, 0]  # (2 n_f + 1, 2 n_t + 1), sums to 1
        for dim, taps in ((-2, kernel.shape[0]), (-1, kernel.shape[1])):
            if taps > 1:
                mask = triangle_sum(mask, taps, dim)
        return mask.mul_(1.0 / ((kernel.shape[0] // 2 + 1) * (kernel.shape[1] // 2 + 1)) ** 2)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T), (B,) -> (B, T)``: TorchGate's gating, padding left at zero. On a CPU the batch
        goes through in chunks of :attr:`CPU_CHUNK` clips, each cut after its longest clip."""
        if lengths is None:
            lengths = torch.full((len(wave),), wave.shape[-1], device=wave.device)
        if wave.device.type != "cpu" or len(wave) <= self.CPU_CHUNK:
            return self._gate(wave, lengths)
        out = torch.zeros_like(wave)
        for start in range(0, len(wave), self.CPU_CHUNK):
            rows = slice(start, start + self.CPU_CHUNK)
            # every STFT frame that touches a valid sample, as in the whole batch
            n = min(wave.shape[-1], int(lengths[rows].max()) + self.n_fft // 2 + self.hop_length)
            out[rows, :n] = self._gate(wave[rows, :n], lengths[rows])
        return out

    def _gate(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(self.win_length, device=wave.device)
        stft = dict(n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                    window=window, center=True)  # fmt: skip
        X = torch.stft(wave, **stft, pad_mode="constant", return_complex=True)  # (B, n_bins, F)
        frames = torch.arange(X.shape[-1], device=wave.device)
        self._frames = (frames < lengths[:, None] // self.hop_length + 1)[:, None, :]
        try:
            if self.nonstationary:
                mask = self._nonstationary_mask((X.real.square() + X.imag.square()).sqrt())
            else:
                mask = self._stationary_mask(amp_to_db(X))
        finally:
            self._frames = None
        mask = mask.to(X.real.dtype)
        if self.prop_decrease != 1.0:
            mask = self.prop_decrease * (mask - 1.0) + 1.0
        out = torch.istft(X.mul_(self._smooth(mask)), **stft, length=wave.shape[-1])
        valid = torch.arange(wave.shape[-1], device=wave.device) < lengths[:, None]
        return out.to(wave.dtype) * valid


def box_sum(x: torch.Tensor, taps: int, dim: int) -> torch.Tensor:
    """Sum of ``taps`` neighbours along ``dim`` with zero padding, aligned like ``conv1d(...,
    padding="same")`` (the extra tap of an even box on the right)."""
    return window_sums(pad(x, (taps - 1) // 2, taps // 2, dim), taps, dim)


def triangle_sum(x: torch.Tensor, taps: int, dim: int) -> torch.Tensor:
    """``x`` filtered along ``dim`` by the triangle ``1, 2, .., n + 1, .., 2, 1`` (``taps = 2n + 1``)
    with zero padding ("same"): two box sums of ``n + 1`` over the once-padded input."""
    half = taps // 2
    x = pad(x, half, half, dim)
    return window_sums(window_sums(x, half + 1, dim), half + 1, dim)


def window_sums(x: torch.Tensor, taps: int, dim: int) -> torch.Tensor:
    """Sums of every ``taps`` consecutive values along ``dim`` (no padding: ``taps - 1`` fewer
    values), by differences of a running sum: O(n) whatever ``taps``."""
    c = pad(x, 1, 0, dim).cumsum(dim)
    n = c.shape[dim] - taps
    return c.narrow(dim, taps, n) - c.narrow(dim, 0, n)


def pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """``x`` with zeros before and after along ``dim``."""
    widths = [0, 0] * (x.dim() - dim % x.dim() - 1) + [before, after]
    return F.pad(x, widths)
