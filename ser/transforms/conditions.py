"""Recording-condition augmentation: rooms, telephone lines and overdriven inputs, batched on the
batch's device (``WaveAugment``s, chosen like those of :mod:`ser.transforms.augment`).

- :class:`Reverb`: a room impulse response per example, from a bank simulated once per sample rate
  (Polack's statistical model: a direct path, then Gaussian noise decaying by 60 dB over the drawn
  reverberation time RT60) or read from a folder of recorded responses.
- :class:`Telephone`: the narrow-band telephone channel: 8 kHz sampling, 300-3400 Hz band-pass,
  8-bit mu-law coding.
- :class:`Clipping`: an overdriven input, the waveform clipped at a drawn fraction of its peak.
- :class:`Codec`: a lossy codec at a low bitrate (Opus, MP3 or Vorbis through libsndfile), on the
  CPU, one clip at a time: for offline copies (``--data.augment.offline_copies``) and tests.

Noise at a drawn SNR (white, pink, brown, or babble of the batch's other speakers) is
:class:`ser.transforms.augment.AddNoise`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from ser.audio import is_audio_file, read_audio
from ser.errors import SERError
from ser.transforms.augment import AddNoise, WaveAugment, check_range, rms, uniform, valid_mask


def simulated_rirs(
    sample_rate: int, rt60: tuple[float, float], n: int, seed: int
) -> list[torch.Tensor]:
    """``n`` impulse responses of Polack's model, RT60 evenly over ``rt60`` (s), drawn from a
    generator of their own (the same bank in every run); each of unit energy, direct path first."""
    generator = torch.Generator().manual_seed(seed)
    rirs = []
    for k in range(n):
        t60 = rt60[0] + (rt60[1] - rt60[0]) * (k / max(1, n - 1))
        length = max(2, round(t60 * sample_rate))
        t = torch.arange(length) / sample_rate
        tail = torch.randn(length, generator=generator) * torch.exp(-3 * math.log(10) * t / t60)
        # direct-to-reverberant ratio drawn in [0, 10] dB: near and far talkers
        drr = 10 ** (float(torch.rand(1, generator=generator)) * 10 / 10)
        tail = tail / tail.norm() / math.sqrt(drr)
        tail[0] = 1.0
        rirs.append(tail / tail.norm())
    return rirs


class Reverb(WaveAugment):
    """Convolve each chosen example with a room impulse response; its level is kept.

    Args:
        p: probability per example.
        rt60: range of the simulated reverberation times (s).
        n_rirs: size of the simulated bank (drawn from per example).
        rir_dir: folder of recorded impulse responses (searched recursively) used instead of the
            simulated bank.
        seed: the simulated bank's own seed.
    """

    def __init__(
        self,
        p: float = 0.3,
        rt60: tuple[float, float] = (0.2, 1.0),
        n_rirs: int = 64,
        rir_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(p)
        self.rt60 = check_range("Reverb", "rt60", rt60)
        if self.rt60[0] <= 0 or n_rirs < 1:
            raise SERError(f"Reverb: rt60={list(rt60)} must be > 0 s and n_rirs={n_rirs} >= 1")
        self.n_rirs, self.seed = n_rirs, seed
        self.rir_files: list[Path] = []
        if rir_dir is not None:
            folder = Path(rir_dir).expanduser()
            self.rir_files = sorted(f for f in folder.rglob("*") if is_audio_file(f))
            if not folder.is_dir() or not self.rir_files:
                raise SERError(f"Reverb: rir_dir={rir_dir} is not a folder of impulse responses")
        self._banks: dict[tuple[int, str], torch.Tensor] = {}

    def bank(self, sample_rate: int, device: torch.device) -> torch.Tensor:
        """``(n, L)`` impulse responses at ``sample_rate`` on ``device``, zero-padded to one length."""
        key = (sample_rate, str(device))
        if key not in self._banks:
            if self.rir_files:
                rirs = []
                for path in self.rir_files:
                    rir = read_audio(path, sample_rate)
                    rir = rir[int(rir.abs().argmax()) :]  # from the direct path on
                    rirs.append(rir / rir.norm().clamp(min=1e-8))
            else:
                rirs = simulated_rirs(sample_rate, self.rt60, self.n_rirs, self.seed)
            bank = torch.zeros(len(rirs), max(len(r) for r in rirs))
            for i, rir in enumerate(rirs):
                bank[i, : len(rir)] = rir
            self._banks[key] = bank.to(device)
        return self._banks[key]

    def apply(self, wave, lengths, sample_rate):
        bank = self.bank(sample_rate, wave.device)
        pick = torch.randint(len(bank), (len(wave),)).to(wave.device)
        wet = AF.fftconvolve(wave, bank[pick])[:, : wave.shape[1]]  # (b, T): the tail past T cut
        wet = wet * valid_mask(lengths, wave.shape[1])
        gain = rms(wave, lengths) / rms(wet, lengths)
        return wet * gain[:, None], lengths


class Telephone(WaveAugment):
    """The narrow-band telephone channel: resampled to 8 kHz, band-passed to 300-3400 Hz, coded
    with 8-bit mu-law, and resampled back (the duration is kept).

    Args:
        p: probability per example.
        low_hz: lower edge of the band (Hz).
        high_hz: upper edge of the band (Hz).
    """

    RATE = 8000

    def __init__(self, p: float = 0.2, low_hz: float = 300.0, high_hz: float = 3400.0) -> None:
        super().__init__(p)
        if not 0 < low_hz < high_hz < self.RATE / 2:
            raise SERError(
                f"Telephone: low_hz ({low_hz}) and high_hz ({high_hz}) must satisfy "
                f"0 < low_hz < high_hz < {self.RATE // 2}"
            )
        self.low_hz, self.high_hz = low_hz, high_hz

    def apply(self, wave, lengths, sample_rate):
        narrow = AF.resample(wave, sample_rate, self.RATE) if sample_rate != self.RATE else wave
        narrow = AF.highpass_biquad(narrow, self.RATE, self.low_hz)
        narrow = AF.lowpass_biquad(narrow, self.RATE, self.high_hz)
        peak = narrow.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)  # (b, 1)
        coded = AF.mu_law_decoding(AF.mu_law_encoding(narrow / peak, 256), 256) * peak
        out = AF.resample(coded, self.RATE, sample_rate) if sample_rate != self.RATE else coded
        out = torch.nn.functional.pad(out, (0, max(0, wave.shape[1] - out.shape[1])))
        return out[:, : wave.shape[1]] * valid_mask(lengths, wave.shape[1]), lengths


class Clipping(WaveAugment):
    """Clip each chosen example at a fraction of its peak drawn from ``level`` (an overdriven
    microphone or amplifier), then restore its level.

    Args:
        p: probability per example.
        level: range of the clipping threshold, as a fraction of the example's peak.
    """

    def __init__(self, p: float = 0.2, level: tuple[float, float] = (0.2, 0.8)) -> None:
        super().__init__(p)
        self.level = check_range("Clipping", "level", level)
        if not 0 < self.level[0] <= self.level[1] <= 1:
            raise SERError(f"Clipping: level={list(level)} must lie in (0, 1]")

    def apply(self, wave, lengths, sample_rate):
        peak = wave.abs().amax(dim=1).clamp(min=1e-8)  # (b,)
        threshold = (uniform(*self.level, len(wave), wave.device) * peak)[:, None]
        clipped = torch.maximum(torch.minimum(wave, threshold), -threshold)
        gain = rms(wave, lengths) / rms(clipped, lengths)
        return clipped * gain[:, None], lengths


#: libsndfile's (format, subtype) of each codec, and the rates Opus codes (others are resampled).
CODECS = {"opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS")}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class Codec(WaveAugment):
    """Encode and decode each chosen example with a lossy codec at a drawn compression level, as
    a voice message, a video call or a streamed recording arrives (libsndfile, through soundfile).

    It runs on the CPU, one clip at a time (tens of milliseconds each): make offline copies with it
    (``--data.augment.offline_copies N``) rather than drawing it on every step.

    Args:
        p: probability per example.
        codec: ``opus`` (speech and calls; at level 1 about 7 kb/s), ``mp3`` or ``vorbis``.
        level: range of libsndfile's compression level, 0 (best quality) to 1 (smallest file);
            MP3 takes at most 0.9.
    """

    def __init__(
        self, p: float = 0.2, codec: str = "opus", level: tuple[float, float] = (0.5, 1.0)
    ) -> None:
        super().__init__(p)
        self.level = check_range("Codec", "level", level)
        top = 0.9 if codec == "mp3" else 1.0
        if codec not in CODECS or not 0 <= self.level[0] <= self.level[1] <= top:
            raise SERError(
                f"Codec: codec {codec!r} must be one of {', '.join(CODECS)} and level="
                f"{list(level)} lie in [0, {top}]"
            )
        if CODECS[codec][0] not in sf.available_formats():
            raise SERError(
                f"Codec: this libsndfile ({sf.__libsndfile_version__}) cannot write {codec}"
            )
        self.codec = codec

    def apply(self, wave, lengths, sample_rate):
        rate = sample_rate
        if self.codec == "opus" and sample_rate not in OPUS_RATES:
            rate = min((r for r in OPUS_RATES if r >= sample_rate), default=48000)
        levels = uniform(*self.level, len(wave), torch.device("cpu")).tolist()
        out = torch.zeros_like(wave)
        for i, (n, level) in enumerate(zip(lengths.tolist(), levels, strict=True)):
            clip = wave[i, :n].detach().float().cpu()
            if rate != sample_rate:
                clip = AF.resample(clip, sample_rate, rate)
            coded = self.code(clip.clamp(-1, 1).numpy(), rate, level)
            if rate != sample_rate:
                coded = AF.resample(coded, rate, sample_rate)
            coded = coded[:n]  # a codec's frames may pad the end
            out[i, : len(coded)] = coded.to(wave.device, wave.dtype)
        return out, lengths

    def code(self, clip, rate: int, level: float) -> torch.Tensor:
        """One clip ``(n,)`` through the codec and back."""
        file_format, subtype = CODECS[self.codec]
        buffer = io.BytesIO()
        sf.write(buffer, clip, rate, format=file_format, subtype=subtype, compression_level=level)
        buffer.seek(0)
        return torch.from_numpy(sf.read(buffer, dtype="float32")[0])


#: ``ser test --perturb`` conditions: name -> (what its value is, the augmentation it builds).
PERTURBATIONS = {
    "noise": ("SNR in dB, white noise", lambda v: AddNoise(1.0, (v, v), kind="white")),
    "pink": ("SNR in dB, pink noise", lambda v: AddNoise(1.0, (v, v), kind="pink")),
    "babble": ("SNR in dB, three other talkers", lambda v: AddNoise(1.0, (v, v), kind="babble")),
    "reverb": ("RT60 in s", lambda v: Reverb(1.0, (v, v), n_rirs=8)),
    "telephone": ("no value", lambda v: Telephone(1.0)),
    "clip": ("threshold as a fraction of the peak", lambda v: Clipping(1.0, (v, v))),
    "opus": ("compression level 0-1", lambda v: Codec(1.0, "opus", (v, v))),
    "mp3": ("compression level 0-0.9", lambda v: Codec(1.0, "mp3", (v, v))),
}


def perturbation(spec: str) -> WaveAugment:
    """The condition ``spec`` names, applied to every clip: ``noise 10`` (white noise at 10 dB
    SNR), ``pink 5``, ``babble 10``, ``reverb 0.6`` (RT60 0.6 s), ``telephone``, ``clip 0.3``,
    ``opus 1.0`` (the Opus codec at libsndfile's compression level 1.0), ``mp3 0.9``."""
    name, _, value = spec.strip().partition(" ")
    known = ", ".join(f"'{n} <{what}>'" if n != "telephone" else f"'{n}'"
                      for n, (what, _) in PERTURBATIONS.items())  # fmt: skip
    if name not in PERTURBATIONS:
        raise SERError(f"--perturb {spec!r}: unknown condition; one of {known}")
    try:
        number = float(value) if name != "telephone" else 0.0
    except ValueError:
        raise SERError(
            f"--perturb {spec!r}: {name} takes a number ({PERTURBATIONS[name][0]})"
        ) from None
    return PERTURBATIONS[name][1](number)
