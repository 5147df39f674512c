"""Feature front-ends: batched waveform -> features, with the valid length of each clip.

Every front-end takes the sample rate as its first argument (the CLI links it from the data),
maps ``(waveform (B, T), lengths (B,))`` to ``(features (B, n_features, F), feature_lengths (B,))``
and exposes ``n_features``: adding a front-end is adding such a class, chosen with
``--data.frontend CLASS``. Filterbanks and windows are buffers, so
``.to(device)`` moves them and the same module serves training, inference and export.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from ser.errors import SERError, check_sizes


def standardize(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Give each clip of ``x`` (B, C, F) mean 0 and std 1 over its valid frames; zero the padding."""
    mask = (torch.arange(x.shape[-1], device=x.device) < lengths[:, None])[:, None, :]  # (B, 1, F)
    count = (lengths.clamp(min=1) * x.shape[1]).to(x.dtype)[:, None, None]  # (B, 1, 1)
    mean = (x * mask).sum(dim=(1, 2), keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return (x - mean) / (var + 1e-5).sqrt() * mask


class Waveform(nn.Module):
    """The raw waveform as a one-channel feature: ``(B, T) -> (B, 1, T)``.

    Args:
        sample_rate: audio sample rate (Hz; linked from the data, unused).
        normalize: standardise each clip over its valid samples.
    """

    n_features = 1

    def __init__(self, sample_rate: int, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = wave.unsqueeze(1)  # (B, 1, T)
        if self.normalize:
            x = standardize(x, lengths)
        return x, lengths


class LogMel(nn.Module):
    """Log-mel spectrogram in dB, as ``librosa.power_to_db(librosa.feature.melspectrogram(...))``.

    Slaney mel scale and filter normalisation, Hann window, centred frames: the librosa defaults.

    Args:
        sample_rate: audio sample rate (Hz).
        n_mels: mel bands.
        win_ms: window length (ms); the FFT size is the next power of two.
        hop_ms: hop between frames (ms).
        f_min: lowest frequency (Hz).
        f_max: highest frequency (Hz); ``None``: Nyquist.
        top_db: floor each clip at this many dB below its loudest bin, as ``power_to_db`` does;
            digital silence would otherwise sit at -100 dB and dominate the clip's statistics.
        normalize: standardise each clip over its valid frames.

    Shapes: ``(B, T), (B,) -> (B, n_mels, F), (B,)`` with ``F = T // hop + 1``.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if n_mels < 1 or not (win_ms > 0 and hop_ms > 0) or (top_db is not None and top_db <= 0):
            raise SERError(
                f"{type(self).__name__}: n_mels ({n_mels}) must be >= 1, win_ms ({win_ms}) and "
                f"hop_ms ({hop_ms}) > 0, top_db ({top_db}) > 0 or null"
            )
        nyquist = sample_rate / 2
        if not 0 <= f_min < (nyquist if f_max is None else f_max) <= nyquist:
            raise SERError(
                f"{type(self).__name__}: f_min ({f_min}) and f_max ({f_max}) must satisfy "
                f"0 <= f_min < f_max <= {nyquist:g} Hz (half the sample rate; null: that)"
            )
        self.n_features = n_mels
        self.top_db = top_db
        self.win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        self.normalize = normalize
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, win_length=self.win_length,
            hop_length=self.hop_length, f_min=f_min, f_max=f_max, n_mels=n_mels, power=2.0,
            center=True, pad_mode="constant", norm="slaney", mel_scale="slaney",
        )  # fmt: skip
        # The complex STFT, squared below as re^2 + im^2: torchaudio's |X|.pow(2) goes through
        # the complex abs, most of the front-end's time on a CPU.
        self.mel.spectrogram.power = None

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of frames that hold signal for clips of ``lengths`` samples."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor") + 1

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, T) -> (B, n_mels, F)`` log-mel in dB, not normalised."""
        spec = self.mel.spectrogram(wave)  # (B, n_fft // 2 + 1, F) complex
        power = spec.real.square() + spec.imag.square()
        db = 10.0 * torch.log10(self.mel.mel_scale(power).clamp(min=1e-10))
        if self.top_db is not None:
            floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db  # (B, 1, 1)
            db = torch.maximum(db, floor)
        return db

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.log_mel(wave)  # (B, n_mels, F)
        frames = self.frames(lengths).clamp(max=x.shape[-1])
        if self.normalize:
            x = standardize(x, frames)
        return x, frames


class MFCC(LogMel):
    """MFCC as ``librosa.feature.mfcc``: orthonormal DCT-II of the log-mel (dB) spectrogram.

    Args:
        n_mfcc: coefficients kept. The other arguments are those of :class:`LogMel`.

    Shapes: ``(B, T), (B,) -> (B, n_mfcc, F), (B,)``.
    """

    def __init__(self, sample_rate: int, n_mfcc: int = 40, n_mels: int = 64, **kwargs) -> None:
        super().__init__(sample_rate, n_mels=n_mels, **kwargs)
        if not 1 <= n_mfcc <= n_mels:
            raise SERError(f"MFCC: n_mfcc ({n_mfcc}) must be between 1 and n_mels ({n_mels})")
        self.n_features = n_mfcc
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")  # (n_mels, n_mfcc)
        self.register_buffer("dct", dct.T.contiguous(), persistent=False)  # (n_mfcc, n_mels)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.dct, super().log_mel(wave))  # (B, n_mfcc, F)


class MelImage(LogMel):
    """Log-mel spectrogram as a fixed-size grey image, seed S4's "spectrogram picture".

    Each clip's log-mel (dB) over its valid frames is min-max scaled to [0, 1], resized bilinearly
    to ``image_size`` (mel rows x time columns: any clip length gives the same shape), and
    normalised to mean 0.5, std 0.5 as S4's torchvision pipeline does, i.e. mapped to [-1, 1].

    Args:
        image_size: ``(height, width)`` of the image: S4 resizes to 150 x 50 pixels (width x
            height), i.e. ``(50, 150)``. The other arguments are those of :class:`LogMel`.

    Shapes: ``(B, T), (B,) -> (B, height, width), (B,)`` (every clip ``width`` columns long).
    """

    def __init__(self, sample_rate: int, image_size: tuple[int, int] = (50, 150), **kwargs) -> None:
        kwargs["normalize"] = False
        super().__init__(sample_rate, **kwargs)
        check_sizes("MelImage", image_size=list(image_size))
        self.height, self.width = (int(v) for v in image_size)
        self.n_features = self.height

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.log_mel(wave)  # (B, n_mels, F)
        n_frames = x.shape[2]
        frames = self.frames(lengths).clamp(max=n_frames)  # (B,)
        valid = (torch.arange(n_frames, device=x.device) < frames[:, None])[:, None, :]
        low = torch.where(valid, x, torch.inf).amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        high = torch.where(valid, x, -torch.inf).amax(dim=(1, 2), keepdim=True)
        x = (x - low) / (high - low).clamp(min=1e-6)  # (B, n_mels, F) in [0, 1] where valid
        # Sample the valid frames of each clip onto `width` columns as a bilinear resize with
        # align_corners=False does: column j reads frame (j + 0.5) * frames / width - 0.5, kept
        # inside the valid frames, then put in grid_sample's [-1, 1] units.
        columns = (torch.arange(self.width, device=x.device) + 0.5) / self.width  # (W,)
        valid_frames = frames[:, None].to(x.dtype)  # (B, 1)
        source = torch.minimum((columns * valid_frames - 0.5).clamp(min=0), valid_frames - 1)
        grid_x = (2 * source + 1) / n_frames - 1  # (B, W)
        grid_y = 2 * (torch.arange(self.height, device=x.device) + 0.5) / self.height - 1  # (H,)
        grid = torch.stack(
            torch.broadcast_tensors(grid_x[:, None, :], grid_y[None, :, None]), dim=-1
        )  # (B, H, W, 2)
        image = nn.functional.grid_sample(
            x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
        )[:, 0]  # (B, H, W)
        return (image - 0.5) / 0.5, torch.full_like(lengths, self.width)
