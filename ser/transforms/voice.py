"""A pretrained speaker encoder as a front-end: what a voice sounds like, window by window.

Resemblyzer's voice encoder (GE2E: a 3-layer LSTM on 40-band mel frames trained to tell thousands
of speakers apart; Apache-2.0, weights inside its wheel: ``pip install 'ser[voice]'``) maps each
1.6-s window of speech to a 256-d unit vector. Such embeddings carry how a voice is used as well
as whose it is (Pappagari et al., ICASSP 2020, "x-vectors meet emotions"), and having been
trained on many speakers, microphones and rooms, they transfer across corpora far better than a
spectrogram. With the features normalised by speaker (``--data.normalization speaker``), what
is left is how a clip departs from its speaker's usual voice.

The network is rebuilt here (an ``nn.LSTM`` and a linear layer) and its weights read as tensors
(:func:`ser.safe.load_tensors`); resemblyzer's own package is not imported, so nothing of it runs.
The windows and the mel spectrogram are those of ``VoiceEncoder.embed_utterance`` (tested against
it), computed for a padded batch on its device.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torchaudio
from torch import nn

from ser.errors import SERError
from ser.pretrained import weights_hash
from ser.safe import load_tensors
from ser.transforms.augment import rms, valid_mask

#: Resemblyzer's audio: 16 kHz, 25-ms windows every 10 ms, 40 mel bands (its ``hparams``).
RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 40
#: Mel frames of one partial utterance (1.6 s) and the encoder's sizes.
WINDOW, HIDDEN, LAYERS = 160, 256, 3
#: Each clip is brought to this level (dB full scale, mean power) before the mel spectrogram, as
#: resemblyzer's ``preprocess_wav`` does; the encoder's input is a power (not log) spectrogram.
LEVEL_DBFS = -30.0


def package_weights() -> Path:
    """The weights file inside the installed resemblyzer package; SERError when it is absent."""
    spec = importlib.util.find_spec("resemblyzer")  # finds the folder; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise SERError(
            "VoiceEmbedding needs the resemblyzer package (its weights ship in the wheel): "
            "pip install 'ser[voice]' (or pip install resemblyzer)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


class VoiceEmbedding(nn.Module):
    """Resemblyzer's speaker embedding of each window of a clip, as a sequence of frames.

    Windows are 1.6 s long, every ``1 / rate`` seconds; a clip shorter than a window is one
    window padded with silence; a last window that holds less than ``min_coverage`` of audio is
    dropped (as ``VoiceEncoder.embed_utterance`` does). Pool the frames in the net
    (:class:`ser.models.EncoderHead`).

    Args:
        sample_rate: audio sample rate (Hz; linked from the data); must be 16000.
        rate: windows per second (at least 0.625, so that the windows cover every clip).
        min_coverage: the share of a window that must hold audio for a last window to count.
        level_dbfs: each clip's level (mean power, dB full scale) before the encoder, so that a
            recording's gain does not change its embedding; ``None``: as given.
        weights: a weights file of the same network (``None``: the one in resemblyzer's wheel).
        weights_sha256: the first 16 hex digits of the weights' SHA-256 that the model was
            trained with (a checkpoint records it); a file that differs is refused.

    Shapes: ``(B, T), (B,) -> (B, 256, P), (B,)``, ``P`` windows.
    """

    #: Marks a front-end whose output depends on the waveform alone: :mod:`ser.data.feature_cache`.
    frozen = True

    def __init__(
        self,
        sample_rate: int,
        rate: float = 1.3,
        min_coverage: float = 0.75,
        level_dbfs: float | None = LEVEL_DBFS,
        weights: str | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        if int(sample_rate) != RATE:
            raise SERError(f"VoiceEmbedding takes {RATE} Hz audio; set --data.sample_rate {RATE}")
        self.step = round(RATE / rate / HOP) if rate > 0 else 0  # mel frames between windows
        if not 0 < self.step <= WINDOW or not 0 < min_coverage <= 1:
            raise SERError(
                f"VoiceEmbedding: rate ({rate}) must be at least {RATE / HOP / WINDOW:g} windows "
                f"per second (they must cover the clip), and 0 < min_coverage ({min_coverage}) <= 1"
            )
        path = Path(weights).expanduser() if weights is not None else package_weights()
        if not path.is_file():
            raise SERError(f"VoiceEmbedding: weights file {path} not found")
        digest = weights_hash(path)
        if weights_sha256 is not None and digest != weights_sha256:
            raise SERError(
                f"{path}: not the voice encoder weights this model was trained with (SHA-256 "
                f"{digest}..., trained with {weights_sha256}...); install the training machine's "
                "resemblyzer, or give its file as the front-end's weights"
            )
        self.min_coverage, self.level_dbfs = float(min_coverage), level_dbfs
        self.mel = torchaudio.transforms.MelSpectrogram(
            RATE,
            n_fft=N_FFT,
            hop_length=HOP,
            n_mels=N_MELS,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )  # fmt: skip  librosa.feature.melspectrogram's defaults, as resemblyzer calls it
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        state = load_tensors(path, f"VoiceEmbedding weights {path}", legacy=True)
        state = state.get("model_state", state) if isinstance(state, dict) else state
        try:
            self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
            self.linear.load_state_dict(
                {k[7:]: v for k, v in state.items() if k.startswith("linear.")}
            )
        except (RuntimeError, AttributeError) as err:
            raise SERError(f"{path}: not resemblyzer's voice encoder weights ({err})") from None
        self.requires_grad_(False)
        self.n_features = HIDDEN
        #: Windows per second: the frame rate the data crops cached features by.
        self.frame_rate = RATE / (HOP * self.step)
        #: What determines the output besides the waveform: the key of the feature cache.
        self.identity = {
            "frontend": "VoiceEmbedding", "weights_sha256": digest, "step": self.step,
            "min_coverage": self.min_coverage, "level_dbfs": level_dbfs,
        }  # fmt: skip
        #: Recorded in a checkpoint's pipeline spec beside the given arguments.
        self.recorded_args = {"weights_sha256": digest}

    def train(self, mode: bool = True) -> VoiceEmbedding:
        """Always evaluates: the encoder is frozen."""
        return super().train(False)

    def output_frames(self, n_samples: int) -> int:
        """Windows of a clip of ``n_samples`` samples (``compute_partial_slices`` of resemblyzer)."""
        return int(self.window_counts(torch.tensor([n_samples]))[0])

    def window_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` windows of clips of ``lengths`` samples, in tensor arithmetic (traceable)."""
        n_frames = torch.div(lengths + HOP, HOP, rounding_mode="floor")  # ceil((n + 1) / HOP)
        starts = (n_frames - WINDOW + self.step + 1).clamp(min=1)  # len(range(0, starts, step))
        count = torch.div(starts + self.step - 1, self.step, rounding_mode="floor")
        coverage = (lengths - (count - 1) * self.step * HOP) / (WINDOW * HOP)
        return count - ((coverage < self.min_coverage) & (count > 1)).long()

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            wave = wave.float() * valid_mask(lengths, wave.shape[1])  # (B, T), padding silent
            if self.level_dbfs is not None:
                gain = 10 ** ((self.level_dbfs - 20 * torch.log10(rms(wave, lengths))) / 20)  # (B,)
                wave = wave * gain[:, None]
            # silence after the batch's end, enough for every clip's last window (a fixed pad:
            # no size computed from the batch, so that a traced export keeps any length)
            wave = nn.functional.pad(wave, (0, (WINDOW + self.step) * HOP))
            mel = self.mel(wave).transpose(1, 2)  # (B, F, 40), frame j centred on sample j*HOP
            windows = mel.unfold(1, WINDOW, self.step).transpose(2, 3)  # (B, N, 160, 40)
            _, (hidden, _) = self.lstm(windows.flatten(0, 1))  # every window of every clip
            embedded = torch.relu(self.linear(hidden[-1]))  # (B * N, 256)
            embedded = embedded / embedded.norm(dim=1, keepdim=True).clamp(min=1e-12)
            embedded = embedded.view(windows.shape[0], windows.shape[1], HIDDEN)  # (B, N, 256)
            counts = self.window_counts(lengths)  # (B,)
            kept = valid_mask(counts, windows.shape[1])  # (B, N)
            embedded = embedded * kept[..., None]
        return embedded.transpose(1, 2), counts
