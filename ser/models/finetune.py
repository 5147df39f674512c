"""A pretrained speech encoder fine-tuned inside the net, with the head of the frozen one."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.encoder_head import EncoderHead
from ser.pretrained import (
    hidden_size,
    hidden_states,
    layer_count,
    load_encoder,
    normalizes_waveform,
)


class FineTunedEncoder(nn.Module):
    """A wav2vec 2.0 / HuBERT / WavLM bundle trained with an :class:`EncoderHead` on its layers.

    Its convolutional feature extractor stays frozen (as in wav2vec 2.0's own fine-tuning); the
    transformer trains at ``encoder_lr`` (its own optimiser parameter group, see
    :meth:`parameter_groups`), optionally only after the head has trained alone for
    ``freeze_steps`` steps. Use it with the ``Waveform`` front-end, ``normalize: false``: the
    net normalises the waveform as the bundle expects.

    Args:
        n_classes: output classes.
        n_features: channels of the input (1: the waveform; linked from the data).
        sample_rate: audio sample rate (Hz; linked from the data).
        bundle: a ``torchaudio.pipelines`` bundle name (see :data:`ser.pretrained.BUNDLES`) or a
            Hugging Face model folder / cached Hub id (see ``SpeechEncoder``).
        weights: a local weights file; ``None``: torch.hub's file (see ``SpeechEncoder``).
        layers: transformer layers used from the bottom (``None``: all).
        encoder_lr: learning rate of the encoder's transformer (the head uses the optimiser's).
        freeze_steps: training steps during which the encoder stays frozen.
        pooling: the head's pooling (``mean``, ``mean_std``, ``attentive``).
        hidden: width of the head's hidden layer.
        dropout: the head's dropout.

    Shapes: ``(B, 1, T), (B,) -> (B, n_classes)``.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        bundle: str = "WAV2VEC2_BASE",
        weights: str | None = None,
        layers: int | None = None,
        encoder_lr: float = 5e-5,
        freeze_steps: int = 0,
        pooling: str = "mean_std",
        hidden: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.encoder = load_encoder(bundle, weights)
        self.encoder.feature_extractor.requires_grad_(False)
        self.n_layers = layer_count(self.encoder, bundle, layers)
        self.normalize = normalizes_waveform(bundle)
        self.encoder_lr, self.freeze_steps = float(encoder_lr), int(freeze_steps)
        self.head = EncoderHead(n_classes, hidden_size(self.encoder), sample_rate, pooling,
                                hidden, dropout)  # fmt: skip
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps seen

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: the head at the optimiser's learning rate, the
        encoder's trainable part at ``encoder_lr``."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        return [
            {"params": list(self.head.parameters())},
            {"params": encoder, "lr": self.encoder_lr},
        ]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        wave = x[:, 0]  # (B, 1, T) -> (B, T)
        if lengths is None:
            lengths = torch.full(wave.shape[:1], wave.shape[1], device=wave.device)
        frozen = False
        if self.training:
            frozen = int(self.steps) < self.freeze_steps
            self.steps += 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            hidden, frames = hidden_states(
                self.encoder, wave, lengths, self.n_layers, self.normalize
            )
        return self.head(hidden, frames)  # (B, n_classes)
