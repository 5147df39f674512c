"""A small head on a pretrained encoder's hidden states: learned layer weights, pooling, MLP."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import SERError
from ser.models.pooling import AttentivePool, mean_pool, mean_std_pool

#: Most hidden layers a head weights (the largest bundle, WAV2VEC2_XLSR_2B, has 48).
MAX_LAYERS = 48
POOLINGS = ("mean", "mean_std", "attentive")


class EncoderHead(nn.Module):
    """Softmax-weighted sum of the layers (SUPERB), masked pooling over time, then an MLP.

    The layer weights start equal; only the first ``n_layers`` of :data:`MAX_LAYERS` are used, so
    the head needs no layer count (the front-end's choice) in its arguments.

    Args:
        n_classes: output classes.
        n_features: hidden size of the encoder (linked from the data).
        sample_rate: unused; part of every net's signature.
        pooling: ``mean``, ``mean_std`` (mean and std) or ``attentive`` (attentive statistics).
        hidden: width of the hidden layer (0: a linear classifier on the pooled vector).
        dropout: dropout before each linear layer.

    Shapes: ``(B, n_layers, n_features, F)`` (or ``(B, n_features, F)``: one layer), ``(B,)``
    -> ``(B, n_classes)``.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        pooling: str = "mean_std",
        hidden: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SERError(f"EncoderHead: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.layer_logits = nn.Parameter(torch.zeros(MAX_LAYERS))
        self.norm = nn.LayerNorm(n_features)
        self.pooling = pooling
        self.attentive = AttentivePool(n_features) if pooling == "attentive" else None
        pooled = n_features if pooling == "mean" else 2 * n_features
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden > 0:
            layers += [nn.Linear(pooled, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            pooled = hidden
        self.classifier = nn.Sequential(*layers, nn.Linear(pooled, n_classes))

    def layer_weights(self, n_layers: int) -> torch.Tensor:
        """``(n_layers,)`` softmax weights of the first ``n_layers`` layers."""
        if n_layers > MAX_LAYERS:
            raise SERError(f"EncoderHead weights at most {MAX_LAYERS} layers, got {n_layers}")
        return self.layer_logits[:n_layers].softmax(dim=0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (B, 1, D, F)
        weights = self.layer_weights(x.shape[1]).to(x.dtype)  # (L,)
        x = torch.einsum("l,bldf->bdf", weights, x)  # (B, D, F)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, D, F), each frame normalised
        if self.attentive is not None:
            pooled = self.attentive(x, lengths)  # (B, 2D)
        elif self.pooling == "mean":
            pooled = mean_pool(x, lengths)  # (B, D)
        else:
            pooled = mean_std_pool(x, lengths)  # (B, 2D)
        return self.classifier(pooled)  # (B, n_classes)
