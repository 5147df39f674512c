"""Noise reduction by spectral gating (noisereduce), per clip at decode time or batched on a device.

- :func:`reduce_noise`: ``noisereduce.reduce_noise`` on one clip, the seeds' preprocessing (S0);
  used by :meth:`ser.data.base.SERDataModule.decode`, so its output is cached with the decoded audio.
- :class:`SpectralGate`: noisereduce's torch implementation (``TorchGate``) on a zero-padded batch
  with valid lengths, on any device; the stationary noise statistics use each clip's valid frames
  only, so padding does not pull the noise floor down.
"""

from __future__ import annotations

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
        raise SERError(f"denoise={mode!r}: choose stationary, nonstationary or null (off)")
    if not 0.0 <= prop_decrease <= 1.0:
        raise SERError(f"denoise_prop_decrease={prop_decrease} must be in [0, 1]")


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
        # TorchGate divides by the smoothed magnitude, which is 0 in digital silence (padding).
        return super()._nonstationary_mask(X_abs + 1e-8)

    def _smooth(self, mask: torch.Tensor) -> torch.Tensor:
        """TorchGate's 2D mask smoothing ``(B, n_bins, F)``, done as the two 1D convolutions it
        factors into (its filter is an outer product): the same result, several times faster."""
        if self.smoothing_filter is None:
            return mask
        kernel = self.smoothing_filter[0, 0]  # (n_freq, n_time), sums to 1
        b, n_bins, n_frames = mask.shape
        v_f, v_t = kernel.sum(1).to(mask.dtype), kernel.sum(0).to(mask.dtype)
        x = mask.transpose(1, 2).reshape(-1, 1, n_bins)  # (B * F, 1, n_bins)
        x = F.conv1d(x, v_f.view(1, 1, -1), padding="same").view(b, n_frames, n_bins)
        x = x.transpose(1, 2).reshape(-1, 1, n_frames)  # (B * n_bins, 1, F)
        return F.conv1d(x, v_t.view(1, 1, -1), padding="same").view(b, n_bins, n_frames)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T), (B,) -> (B, T)``: TorchGate's gating, padding left at zero."""
        if lengths is None:
            lengths = torch.full((len(wave),), wave.shape[-1], device=wave.device)
        window = torch.hann_window(self.win_length, device=wave.device)
        stft = dict(n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                    window=window, center=True)  # fmt: skip
        X = torch.stft(wave, **stft, pad_mode="constant", return_complex=True)  # (B, n_bins, F)
        frames = torch.arange(X.shape[-1], device=wave.device)
        self._frames = (frames < lengths[:, None] // self.hop_length + 1)[:, None, :]
        try:
            if self.nonstationary:
                mask = self._nonstationary_mask(X.abs())
            else:
                mask = self._stationary_mask(amp_to_db(X))
        finally:
            self._frames = None
        mask = self._smooth(self.prop_decrease * (mask.to(X.real.dtype) - 1.0) + 1.0)
        out = torch.istft(X * mask, **stft, length=wave.shape[-1])
        valid = torch.arange(wave.shape[-1], device=wave.device) < lengths[:, None]
        return out.to(wave.dtype) * valid
