"""A frozen pretrained speech encoder as a front-end: every transformer layer's hidden states.

The layers are weighted in the net (:class:`ser.models.EncoderHead`, SUPERB style), so the
front-end hands all of them on; its weights stay fixed and it never trains (dropout off), which is
what lets :mod:`ser.data.feature_cache` compute each clip once.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from ser.errors import SERError
from ser.pretrained import (
    bundle_of,
    load_encoder,
    normalize_waveform,
    normalizes_waveform,
    weights_file,
    weights_hash,
)


class SpeechEncoder(nn.Module):
    """Hidden states of each transformer layer of a frozen wav2vec 2.0 / HuBERT / WavLM bundle.

    Args:
        sample_rate: audio sample rate (Hz; linked from the data); must be the bundle's (16000).
        bundle: a ``torchaudio.pipelines`` bundle name, e.g. ``WAVLM_BASE_PLUS``, ``HUBERT_BASE``,
            ``WAV2VEC2_BASE`` (see :data:`ser.pretrained.BUNDLES`).
        weights: a local weights file of that bundle; ``None``: torch.hub's file
            (``$TORCH_HOME/hub/checkpoints/<name>.pth``), where a connected machine downloads it.
        layers: how many transformer layers to run from the bottom (``None``: all); upper layers
            of large encoders often add little for emotion and cost most.

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
    ) -> None:
        super().__init__()
        path = weights_file(bundle, weights)  # the one-line error before anything loads
        self.encoder = load_encoder(bundle, path).requires_grad_(False)
        rate = int(bundle_of(bundle).sample_rate)
        if int(sample_rate) != rate:
            raise SERError(
                f"SpeechEncoder: {bundle} takes {rate} Hz audio; set --data.sample_rate {rate}"
            )
        depth = len(self.encoder.encoder.transformer.layers)
        if layers is not None and not 1 <= layers <= depth:
            raise SERError(
                f"SpeechEncoder: layers ({layers}) must be between 1 and {depth} for {bundle}"
            )
        self.n_layers = depth if layers is None else int(layers)
        self.n_features = int(self.encoder.encoder.feature_projection.projection.out_features)
        self.normalize = normalizes_waveform(bundle)
        #: What identifies this front-end's output (bundle, exact weights, depth): the cache key.
        self.identity = {
            "bundle": bundle, "weights_sha256": weights_hash(Path(path)), "layers": self.n_layers,
        }  # fmt: skip

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


def hidden_states(
    encoder: nn.Module, wave: torch.Tensor, lengths: torch.Tensor, n_layers: int, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of the first ``n_layers`` transformer layers of a torchaudio ``Wav2Vec2Model``
    on a padded batch, as its ``extract_features`` computes them, with padded frames masked out
    of attention for WavLM too (torchaudio's WavLM refuses ``lengths``).

    Shapes: ``(B, T), (B,) -> (B, n_layers, D, F), (B,)``.
    """
    if normalize:
        wave = normalize_waveform(wave, lengths)
    x, frames = encoder.feature_extractor(wave, lengths)  # (B, F, C), (B,)
    x, attention_mask = encoder.encoder._preprocess(x, frames)  # padded frames zeroed
    transformer = encoder.encoder.transformer
    x = transformer._preprocess(x)  # (B, F, D) with the positional convolution
    padding = torch.arange(x.shape[1], device=x.device) >= frames[:, None]  # (B, F)
    padding = torch.zeros(padding.shape, dtype=x.dtype, device=x.device).masked_fill(
        padding, float("-inf")
    )  # additive, as WavLM's relative position bias it is added to
    wavlm = isinstance(transformer.layers[0].attention, WavLMSelfAttention)
    outputs, position_bias = [], None
    for layer in transformer.layers[:n_layers]:
        if wavlm:
            x, position_bias = layer(x, None, position_bias=position_bias, key_padding_mask=padding)
        else:
            x, position_bias = layer(x, attention_mask, position_bias=position_bias)
        outputs.append(x)
    features = torch.stack(outputs, dim=1).transpose(2, 3)  # (B, L, F, D) -> (B, L, D, F)
    return features, frames.long().clamp(min=1, max=features.shape[-1])
