"""Batched data augmentation on any device, drawn per example.

Two kinds, applied by the :class:`ser.transforms.FeaturePipeline` while training:

- :class:`WaveAugment`: ``(wave (B, T), lengths (B,), sample_rate) -> (wave (B, T'), lengths (B,))``
  on zero-padded waveforms: :class:`AddNoise`, :class:`Gain`, :class:`TimeShift`, :class:`Speed`,
  :class:`TimeStretch`, :class:`PitchShift`. Those that change durations (speed, stretch) return
  the new valid lengths and pad the batch to the longest result.
- :class:`FeatureAugment`: ``(features (B, C, F), feature_lengths (B,)) -> same`` after the
  front-end: :class:`FrequencyMask`, :class:`TimeMask` (SpecAugment).

:class:`Mixup` mixes pairs of examples' features and returns soft targets for the loss.

Every augmentation has a probability ``p`` of being applied to each example of a batch. Random
draws use torch's global generator (seeded by ``seed_everything``), so a seed fixes the batch.
Padding stays zero and ``lengths`` stay exact. Settings are checked at construction.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import torch
import torchaudio.functional as AF
from torch import nn

from ser.audio import is_audio_file, read_audio
from ser.errors import SERError


def check_probability(owner: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise SERError(f"{owner}: p={p} must be a probability in [0, 1]")
    return float(p)


def check_range(owner: str, name: str, value: tuple[float, float] | list[float]) -> tuple:
    """A ``(low, high)`` range with ``low <= high``; raises naming ``owner.name``."""
    if len(value) != 2 or value[0] > value[1]:
        raise SERError(
            f"{owner}: {name}={list(value)} must be a range [low, high] with low <= high"
        )
    return float(value[0]), float(value[1])


def check_choices(owner: str, name: str, value: list[float], low: float = -math.inf) -> list:
    if not value or any(v <= low for v in value):
        raise SERError(f"{owner}: {name}={list(value)} must be a non-empty list of values > {low}")
    return [float(v) for v in value]


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``(B,) -> (B, size)`` True where an index is below the example's length."""
    return torch.arange(size, device=lengths.device) < lengths[:, None]


def uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(low, high), drawn on the CPU generator so that any device gives the same."""
    return (low + (high - low) * torch.rand(n)).to(device)


class WaveAugment(nn.Module):
    """Base of waveform augmentations: each example is changed with probability ``p``.

    Subclasses implement :meth:`apply` on the selected examples only.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_probability(type(self).__name__, p)

    def select(self, n: int) -> torch.Tensor:
        """``(n,)`` bool: which examples this call changes (drawn on the CPU generator)."""
        return torch.rand(n) < self.p

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor, sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.select(len(wave)).to(wave.device)
        if not chosen.any():
            return wave, lengths
        index = chosen.nonzero().squeeze(1)
        new, new_lengths = self.apply(wave[index], lengths[index], sample_rate)
        if new.shape[1] == wave.shape[1] and torch.equal(new_lengths, lengths[index]):
            return wave.index_copy(0, index, new), lengths
        return merge(wave, lengths, [(index, new, new_lengths)])

    def apply(
        self, wave: torch.Tensor, lengths: torch.Tensor, sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment every example of ``wave`` ``(b, T)``; return the waves, zero beyond their
        new lengths, and the lengths."""
        raise NotImplementedError


def merge(
    wave: torch.Tensor,
    lengths: torch.Tensor,
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace rows of the padded batch ``wave`` by groups of ``(rows, waves (b, T_g), lengths)``
    and re-pad it to the longest valid length."""
    out_lengths = lengths.clone()
    for rows, _, new_lengths in groups:
        out_lengths[rows] = new_lengths
    size = max(int(out_lengths.max()), 1)
    out = wave.new_zeros(len(wave), size)
    keep = min(size, wave.shape[1])
    out[:, :keep] = wave[:, :keep]
    for rows, new, _ in groups:
        width = min(size, new.shape[1])
        out[rows] = 0.0
        out[rows, :width] = new[:, :width]
    return out, out_lengths


class AddNoise(WaveAugment):
    """Add noise at a signal-to-noise ratio drawn per example from ``snr_db``.

    Generated noise of a colour (``white``; ``pink`` and ``brown``, whose power falls by 3 and 6 dB
    an octave like most room and street noise), ``babble`` (three other examples of the batch,
    i.e. other speakers, talking at once), or segments of the recordings in ``noise_dir`` (any
    format :func:`ser.audio.read_audio` reads; resampled to the batch's rate, looped to length).
    The SNR is measured over each clip's valid samples (``torchaudio.functional.add_noise``).

    Args:
        p: probability per example.
        snr_db: range of the signal-to-noise ratio in dB.
        noise_dir: folder of noise recordings (searched recursively), used instead of ``kind``.
        kind: the generated noise: ``white``, ``pink``, ``brown`` or ``babble``.
    """

    KINDS = ("white", "pink", "brown", "babble")

    def __init__(
        self,
        p: float = 0.5,
        snr_db: tuple[float, float] = (10.0, 30.0),
        noise_dir: str | None = None,
        kind: str = "white",
    ) -> None:
        super().__init__(p)
        self.snr_db = check_range("AddNoise", "snr_db", snr_db)
        if kind not in self.KINDS:
            raise SERError(f"AddNoise: kind={kind!r} must be one of {', '.join(self.KINDS)}")
        self.kind = kind
        self.noise_files: list[Path] = []
        if noise_dir is not None:
            folder = Path(noise_dir).expanduser()
            if not folder.is_dir():
                raise SERError(
                    f"AddNoise: noise_dir={noise_dir} is not a folder of noise recordings"
                )
            self.noise_files = sorted(p for p in folder.rglob("*") if is_audio_file(p))
            if not self.noise_files:
                raise SERError(f"AddNoise: noise_dir={noise_dir} holds no audio files")
        # (sample rate, device) -> all recordings, concatenated: read once, moved once.
        self._noise: dict[tuple[int, str], torch.Tensor] = {}

    def noise_bank(self, sample_rate: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """All noise recordings at ``sample_rate``, concatenated: ``(N,)`` on ``device``."""
        key = (sample_rate, str(device))
        if key not in self._noise:
            waves = [read_audio(path, sample_rate) for path in self.noise_files]
            self._noise[key] = torch.cat(waves).to(device)
        return self._noise[key]

    def noise(self, shape: torch.Size, sample_rate: int, device: torch.device) -> torch.Tensor:
        if not self.noise_files:
            return coloured_noise(shape, self.kind, device)
        bank = self.noise_bank(sample_rate, device)
        start = torch.randint(len(bank), (shape[0], 1)).to(device)
        index = (start + torch.arange(shape[1], device=device)) % len(bank)  # (b, T)
        return bank[index]

    def apply(self, wave, lengths, sample_rate):
        if self.kind == "babble" and not self.noise_files:
            noise = babble(wave, lengths)
        else:
            noise = self.noise(wave.shape, sample_rate, wave.device)
        noise = noise * valid_mask(lengths, wave.shape[1])
        snr = uniform(*self.snr_db, len(wave), wave.device)
        return AF.add_noise(wave, noise, snr, lengths), lengths


def coloured_noise(shape: torch.Size, kind: str, device: torch.device) -> torch.Tensor:
    """``(b, T)`` Gaussian noise of unit variance whose power falls as ``1 / f`` (``pink``) or
    ``1 / f^2`` (``brown``), or is flat (``white``)."""
    white = torch.randn(shape, device=device)
    if kind not in ("pink", "brown"):
        return white
    spectrum = torch.fft.rfft(white, dim=-1)  # (b, T // 2 + 1)
    freqs = torch.arange(spectrum.shape[-1], device=device).clamp(min=1).float()
    shaped = torch.fft.irfft(spectrum / freqs ** (0.5 if kind == "pink" else 1.0), n=shape[-1])
    return shaped / shaped.std(dim=-1, keepdim=True).clamp(min=1e-8)


def babble(wave: torch.Tensor, lengths: torch.Tensor, talkers: int = 3) -> torch.Tensor:
    """Other examples of the batch talking at once: the sum of ``talkers`` others, each from a
    random point of its own speech (looped), at equal level. ``(b, T) -> (b, T)``."""
    b, size = wave.shape
    t = torch.arange(size, device=wave.device)
    out = torch.zeros_like(wave)
    for k in range(1, talkers + 1):
        other = (torch.arange(b, device=wave.device) + k) % b
        n = lengths[other].clamp(min=1)[:, None]  # (b, 1)
        start = (torch.rand(b).to(wave.device)[:, None] * n).long()
        voice = wave[other].gather(1, (start + t) % n)  # (b, T)
        out = out + voice / rms(voice, lengths[other].clamp(max=size))[:, None]
    return out


def rms(wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(b, T), (b,) -> (b,)`` root mean square over the valid samples (at least 1e-8)."""
    energy = (wave.square() * valid_mask(lengths, wave.shape[1])).sum(1)
    return (energy / lengths.clamp(min=1)).sqrt().clamp(min=1e-8)


class Gain(WaveAugment):
    """Scale each example by a gain drawn from ``gain_db``.

    Args:
        p: probability per example.
        gain_db: range of the gain in dB.
    """

    def __init__(self, p: float = 0.5, gain_db: tuple[float, float] = (-6.0, 6.0)) -> None:
        super().__init__(p)
        self.gain_db = check_range("Gain", "gain_db", gain_db)

    def apply(self, wave, lengths, sample_rate):
        gain = 10.0 ** (uniform(*self.gain_db, len(wave), wave.device) / 20.0)
        return wave * gain[:, None], lengths


class TimeShift(WaveAugment):
    """Roll each example circularly within its valid samples (``np.roll`` of seed S1).

    Args:
        p: probability per example.
        max_fraction: the shift is drawn from ``[-max_fraction, max_fraction]`` of the clip length.
    """

    def __init__(self, p: float = 0.5, max_fraction: float = 0.2) -> None:
        super().__init__(p)
        if not 0.0 <= max_fraction <= 1.0:
            raise SERError(f"TimeShift: max_fraction={max_fraction} must be in [0, 1]")
        self.max_fraction = max_fraction

    def apply(self, wave, lengths, sample_rate):
        frac = uniform(-self.max_fraction, self.max_fraction, len(wave), wave.device)
        shift = (frac * lengths).round().long()  # (b,)
        t = torch.arange(wave.shape[1], device=wave.device)
        index = (t - shift[:, None]) % lengths.clamp(min=1)[:, None]  # (b, T)
        return wave.gather(1, index) * valid_mask(lengths, wave.shape[1]), lengths


class GroupedWaveAugment(WaveAugment):
    """An augmentation with a discrete set of ``choices``: each choice is one batched call.

    Resampling and phase vocoding cost one filter or STFT per distinct value, so values are drawn
    from a list rather than a continuous range.
    """

    choices: list[float]

    def apply(self, wave, lengths, sample_rate):
        pick = torch.randint(len(self.choices), (len(wave),)).to(wave.device)
        groups = []
        for k, value in enumerate(self.choices):
            rows = (pick == k).nonzero().squeeze(1)
            if len(rows):
                new, new_lengths = self.apply_one(wave[rows], lengths[rows], value, sample_rate)
                new = new * valid_mask(new_lengths, new.shape[1])
                groups.append((rows, new, new_lengths))
        return merge(wave, lengths, groups)

    def apply_one(
        self, wave: torch.Tensor, lengths: torch.Tensor, value: float, sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment the examples of ``wave`` ``(b, T)`` with one ``value`` of the choices."""
        raise NotImplementedError


class Speed(GroupedWaveAugment):
    """Speed perturbation (tempo and pitch together) by resampling, as in Kaldi recipes.

    Args:
        p: probability per example.
        factors: speed factors drawn from per example (> 1 is faster and shorter).
    """

    def __init__(self, p: float = 0.5, factors: list[float] = [0.9, 1.1]) -> None:  # noqa: B006
        super().__init__(p)
        self.choices = check_choices("Speed", "factors", factors, low=0.0)

    def apply_one(self, wave, lengths, factor, sample_rate):
        return AF.speed(wave, sample_rate, factor, lengths)


def stretch(wave: torch.Tensor, rate: float, n_fft: int = 512) -> torch.Tensor:
    """Phase-vocoder time stretch of ``(b, T)`` to ``(b, round(T / rate))`` (pitch kept)."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True)  # (b, n_fft/2+1, F)
    phase_advance = torch.linspace(0, math.pi * hop, spec.shape[-2], device=wave.device)[..., None]
    spec = AF.phase_vocoder(spec, rate, phase_advance)
    return torch.istft(spec, n_fft, hop, window=window, length=round(wave.shape[-1] / rate))


class TimeStretch(GroupedWaveAugment):
    """Change the tempo and keep the pitch (``librosa.effects.time_stretch`` of seed S1).

    Args:
        p: probability per example.
        rates: stretch rates drawn from per example (> 1 is faster and shorter).
        n_fft: FFT size of the phase vocoder.
    """

    def __init__(
        self,
        p: float = 0.5,
        rates: list[float] = [0.8, 0.9, 1.1, 1.2],  # noqa: B006
        n_fft: int = 512,
    ) -> None:
        super().__init__(p)
        self.choices = check_choices("TimeStretch", "rates", rates, low=0.0)
        self.n_fft = n_fft

    def apply_one(self, wave, lengths, rate, sample_rate):
        out = stretch(wave, rate, self.n_fft)
        return out, (lengths / rate).round().long().clamp(max=out.shape[-1])


class PitchShift(GroupedWaveAugment):
    """Shift the pitch by a number of semitones and keep the duration (seed S1's pitch shift).

    A phase-vocoder stretch by the pitch ratio followed by a resampling back to the duration; the
    ratio is approximated by a fraction with a small denominator so that the resampling filter
    stays short (``torchaudio.functional.pitch_shift`` resamples with the exact, huge ratio).

    Args:
        p: probability per example.
        semitones: shifts drawn from per example.
        n_fft: FFT size of the phase vocoder.
    """

    def __init__(
        self,
        p: float = 0.5,
        semitones: list[float] = [-2.0, -1.0, 1.0, 2.0],  # noqa: B006
        n_fft: int = 512,
    ) -> None:
        super().__init__(p)
        self.choices = check_choices("PitchShift", "semitones", semitones)
        self.n_fft = n_fft

    def apply_one(self, wave, lengths, semitones, sample_rate):
        ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(32)
        longer = stretch(wave, 1.0 / float(ratio), self.n_fft)  # (b, ~T * ratio)
        out = AF.resample(longer, ratio.numerator, ratio.denominator)[:, : wave.shape[-1]]
        return out, lengths.clamp(max=out.shape[-1])


class FeatureAugment(nn.Module):
    """Base of feature augmentations on ``(B, ..., C, F)`` features (``C`` feature bins, ``F``
    frames; an encoder's layers in between) with valid ``feature_lengths``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_probability(type(self).__name__, p)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class _Mask(FeatureAugment):
    """SpecAugment masks along one axis, each of width ``U(0, max_width)``, per example; on an
    encoder's ``(B, L, D, F)`` features the same mask covers every layer."""

    axis: int  # -2: feature bins, -1: frames

    def __init__(self, p: float = 1.0, max_width: int = 8, n_masks: int = 2) -> None:
        super().__init__(p)
        if max_width < 0 or n_masks < 0:
            raise SERError(
                f"{type(self).__name__}: max_width={max_width} and n_masks={n_masks} must be >= 0"
            )
        self.max_width, self.n_masks = max_width, n_masks

    def forward(self, x, lengths):
        b, device, n = len(x), x.device, x.shape[self.axis]
        size = lengths if self.axis == -1 else torch.full_like(lengths, n)
        frames = (b, *[1] * (x.dim() - 2), x.shape[-1])  # (B, 1, ..., F)
        valid = valid_mask(lengths, x.shape[-1]).view(frames)
        per_frame = x[0, ..., 0].numel()  # values in one frame
        fill = (x * valid).flatten(1).sum(1) / (lengths.clamp(min=1) * per_frame)  # clip mean
        pos = torch.arange(n, device=device)
        masked = torch.zeros(b, n, dtype=torch.bool, device=device)
        chosen = (torch.rand(b) < self.p).to(device)
        for _ in range(self.n_masks):
            width = (torch.rand(b).to(device) * (self.max_width + 1)).floor().long()
            width = torch.minimum(width, size)
            start = (torch.rand(b).to(device) * (size - width + 1)).floor().long()
            masked |= (pos >= start[:, None]) & (pos < (start + width)[:, None])
        masked &= chosen[:, None]
        masked = masked.view(frames) if self.axis == -1 else masked.view(*frames[:-2], n, 1)
        return torch.where(masked, fill.view(b, *[1] * (x.dim() - 1)), x) * valid, lengths


class FrequencyMask(_Mask):
    """SpecAugment frequency masks: ``n_masks`` bands of up to ``max_width`` bins per example.

    Masked bins take the clip's mean feature value (0 for standardised features).

    Args:
        p: probability per example.
        max_width: widest mask, in feature bins.
        n_masks: masks per example.
    """

    axis = -2


class TimeMask(_Mask):
    """SpecAugment time masks: ``n_masks`` spans of up to ``max_width`` frames, within each clip.

    Args:
        p: probability per example.
        max_width: widest mask, in frames (clamped to the clip's valid frames).
        n_masks: masks per example.
    """

    axis = -1


class Mixup(nn.Module):
    """Mixup of features (Zhang et al. 2018): ``lam * x_i + (1 - lam) * x_j`` with soft targets.

    ``lam ~ Beta(alpha, alpha)`` per example, folded to ``>= 0.5`` so that the example's own label
    stays the larger part (metrics keep using the hard label); ``j`` is a random permutation.

    Args:
        p: probability per example.
        alpha: Beta distribution parameter.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.4) -> None:
        super().__init__()
        self.p = check_probability("Mixup", p)
        if alpha <= 0:
            raise SERError(f"Mixup: alpha={alpha} must be > 0")
        self.alpha = alpha

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, n_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, ..., C, F), (B,), (B,)`` -> mixed features, lengths and ``(B, n_classes)``
        targets."""
        b, device = len(x), x.device
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b,))
        lam = torch.maximum(lam, 1.0 - lam)
        lam = torch.where(torch.rand(b) < self.p, lam, torch.ones(b)).to(device, x.dtype)
        perm = torch.randperm(b).to(device)
        weight = lam.view(b, *[1] * (x.dim() - 1))
        mixed = weight * x + (1.0 - weight) * x[perm]
        onehot = nn.functional.one_hot(labels, n_classes).to(x.dtype)  # (B, n_classes)
        target = lam[:, None] * onehot + (1.0 - lam[:, None]) * onehot[perm]
        lengths = torch.where(lam < 1.0, torch.maximum(lengths, lengths[perm]), lengths)
        return mixed, lengths, target
