"""A frozen pretrained speech encoder as a front-end: every transformer layer's hidden states.

The layers are weighted in the net (:class:`ser.models.EncoderHead`, SUPERB style), so the
front-end hands all of them on; its weights stay fixed and it never trains (dropout off), which is
what lets :mod:`ser.data.feature_cache` compute each clip once.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ser.errors import SERError
from ser.pretrained import (
    hidden_size,
    hidden_states,
    layer_count,
    load_encoder,
    normalizes_waveform,
    sample_rate_of,
    weights_file,
    weights_hash,
)


class SpeechEncoder(nn.Module):
    """Hidden states of each transformer layer of a frozen wav2vec 2.0 / HuBERT / WavLM encoder.

    Args:
        sample_rate: audio sample rate (Hz; linked from the data); must be the bundle's (16000).
        bundle: a ``torchaudio.pipelines`` bundle name, e.g. ``WAVLM_BASE_PLUS``, ``HUBERT_BASE``,
            ``WAV2VEC2_BASE`` (see :data:`ser.pretrained.BUNDLES`), or a Hugging Face model: its
            folder, or its Hub id when it is in the local Hugging Face cache
            (``pip install 'ser[hf]'``; see :mod:`ser.pretrained`).
        weights: a local weights file of that bundle (not for a Hugging Face model, whose
            folder holds them); ``None``: torch.hub's file
            (``$TORCH_HOME/hub/checkpoints/<name>.pth``), where a connected machine downloads it.
        layers: how many transformer layers to run from the bottom (``None``: all); upper layers
            of large encoders often add little for emotion and cost most.
        weights_sha256: the first 16 hex digits of the weights file's SHA-256 that the model was
            trained with: a checkpoint records it, and a file that differs is refused (its
            features would not be the ones the head learned).

    Shapes: ``(B, T), (B,) -> (B, n_layers, n_features, F), (B,)``, ``F`` frames at 50 per second.
    """

    #: Marks a front-end whose output depends on the waveform alone: :mod:`ser.data.feature_cache`.
    frozen = True

    def __init__(
        self,
        sample_rate: int,
        bundle: str = "WAVLM_BASE_PLUS",
        weights: str | None = None,
        layers: int | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        path = weights_file(bundle, weights)  # the one-line error before anything loads
        digest = weights_hash(Path(path))
        if weights_sha256 is not None and digest != weights_sha256:
            raise SERError(
                f"{path}: not the {bundle} weights this model was trained with (SHA-256 "
                f"{digest}..., trained with {weights_sha256}...); put the training machine's "
                "file there, or give it as the front-end's weights"
            )
        self.encoder = load_encoder(bundle, path).requires_grad_(False)
        rate = sample_rate_of(bundle)
        if int(sample_rate) != rate:
            raise SERError(
                f"SpeechEncoder: {bundle} takes {rate} Hz audio; set --data.sample_rate {rate}"
            )
        self.n_layers = layer_count(self.encoder, bundle, layers)
        self.n_features = hidden_size(self.encoder)
        self.normalize = normalizes_waveform(bundle)
        strides = [layer.conv.stride[0] for layer in self.encoder.feature_extractor.conv_layers]
        #: Frames per second (50 for every bundle).
        self.frame_rate = int(sample_rate) / math.prod(strides)
        #: What identifies this front-end's output (bundle, exact weights, depth): the cache key.
        self.identity = {"bundle": bundle, "weights_sha256": digest, "layers": self.n_layers}
        #: Recorded in a checkpoint's pipeline spec beside the given arguments.
        self.recorded_args = {"weights_sha256": digest}

    def output_frames(self, n_samples: int) -> int:
        """Frames of a clip of ``n_samples`` samples, from the convolutions' kernels and strides
        (what the encoder computes, without running it)."""
        n = n_samples
        for layer in self.encoder.feature_extractor.conv_layers:
            kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
            n = 0 if n < kernel else (n - kernel) // stride + 1
        return n

    def train(self, mode: bool = True) -> SpeechEncoder:
        """Always evaluates: a frozen encoder's dropout never runs."""
        return super().train(False)

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            hidden, frames = hidden_states(
                self.encoder, wave, lengths, self.n_layers, self.normalize
            )
        return hidden, frames
