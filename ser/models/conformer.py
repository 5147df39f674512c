"""A small Conformer encoder (Gulati et al. 2020) over log-mel frames, built from
``torchaudio.models.Conformer``'s layers with rotary positions (Su et al. 2021, RoFormer) in the
self-attention.

torchaudio's Conformer has no positional encoding, and its forward cannot serve here: it sizes the
padding mask with ``lengths.max().item()`` (a constant in a traced export) and feeds the padding
into the depthwise convolution, so a clip's output would depend on its batch. This module keeps
torchaudio's feed-forward, convolution and normalisation layers, swaps each layer's attention for
a rotary one, and runs the layer's steps itself with the padding zeroed before every convolution
and masked out of attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ser.errors import SERError, check_fraction, check_sizes
from ser.models.layers import conv_lengths, mask_padding
from ser.models.pooling import mean_pool, time_mask


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x`` (B, H, T, D): each pair of dimensions ``(i, i + D/2)``
    turned by the frame's angle, so that query-key products depend on relative offsets only."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, D / 2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RotaryAttention(nn.Module):
    """Multi-head self-attention with rotary positions, keys beyond each clip's length masked.

    Shapes: ``(B, T, D), (B, T) bool valid frames -> (B, T, D)``.

    Args:
        dim: model width ``D``.
        n_heads: attention heads (``D / n_heads`` must be even).
        dropout: dropout on the attention weights.
        base: the rotary angles' base period.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        head_dim = dim // n_heads
        if dim % n_heads or head_dim % 2:
            raise SERError(
                f"Conformer: d_model={dim} must split into n_heads={n_heads} heads of an even width"
            )
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        inverse_frequencies = base ** -(
            torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
        )
        self.register_buffer("inverse_frequencies", inverse_frequencies, persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).unflatten(-1, (3, self.n_heads, -1))  # (B, T, 3, H, D / H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, D / H) each
        frames = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)  # (T,)
        angles = frames[:, None] * self.inverse_frequencies  # (T, D / 2H)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        attended = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=valid[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, D / H)
        return self.out(attended.transpose(1, 2).flatten(2))  # (B, T, D)


def conformer_layer(layer: nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """torchaudio's ``ConformerLayer`` (feed-forward, attention, convolution, feed-forward, each
    with a residual; layer norm last), its padding zeroed before the depthwise convolution.

    Shapes: ``(B, T, D), (B, T) -> (B, T, D)``.
    """
    x = x + 0.5 * layer.ffn1(x)
    x = x + layer.self_attn_dropout(layer.self_attn(layer.self_attn_layer_norm(x), valid))
    conv = layer.conv_module
    y = conv.sequential[:2](conv.layer_norm(x).transpose(1, 2))  # pointwise + GLU: (B, D, T)
    y = conv.sequential[2:](y * valid[:, None, :].to(y.dtype))  # depthwise ... pointwise: (B, D, T)
    x = x + y.transpose(1, 2)
    x = x + 0.5 * layer.ffn2(x)
    return layer.final_layer_norm(x)


class Conformer(nn.Module):
    """Convolutional subsampling (two 3x3 Conv2d of stride 2: a quarter of the frames), a linear
    projection, Conformer layers with rotary self-attention, mean over the valid frames and a
    linear classifier.

    Args:
        n_classes: output classes.
        n_features: frequency bins of the input (``n_mels``).
        sample_rate: unused; part of every net's signature.
        d_model: width of the encoder (and of the subsampling convolutions).
        n_heads: attention heads.
        ffn_dim: hidden width of the feed-forward modules.
        n_layers: Conformer layers.
        kernel_size: taps of the depthwise convolutions (odd), in subsampled frames.
        dropout: dropout in the encoder and before the classifier.
    """

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        sample_rate: int,
        d_model: int = 96,
        n_heads: int = 4,
        ffn_dim: int = 384,
        n_layers: int = 4,
        kernel_size: int = 15,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_sizes("Conformer", d_model=d_model, n_heads=n_heads, ffn_dim=ffn_dim,
                    n_layers=n_layers, kernel_size=kernel_size, n_classes=n_classes)  # fmt: skip
        check_fraction("Conformer", "dropout", dropout)
        if kernel_size % 2 == 0:
            raise SERError(f"Conformer: kernel_size={kernel_size} must be odd")
        freq = ((n_features - 3) // 2 + 1 - 3) // 2 + 1  # frequency is not padded
        if freq < 1:
            raise SERError(
                f"Conformer: the subsampling needs at least 7 feature bins, the front-end gives "
                f"{n_features} (n_mels)"
            )
        # time padded by one: any clip keeps at least one frame, and zeroed padding stays padding
        self.subsampling = nn.ModuleList([
            nn.Conv2d(1, d_model, 3, stride=2, padding=(0, 1)),
            nn.Conv2d(d_model, d_model, 3, stride=2, padding=(0, 1)),
        ])  # fmt: skip
        self.project = nn.Sequential(nn.Linear(d_model * freq, d_model), nn.Dropout(dropout))
        self.encoder = torchaudio.models.Conformer(
            d_model, n_heads, ffn_dim, n_layers, kernel_size, dropout=dropout
        )
        for layer in self.encoder.conformer_layers:
            layer.self_attn = RotaryAttention(d_model, n_heads, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, n_classes))

    def subsample(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input frames and how many are valid:
        ``(B, n_features, F), (B,) -> (B, F', D), (B,)``."""
        if lengths is None:
            lengths = torch.full(x.shape[:1], x.shape[-1], device=x.device)
        lengths = lengths.clamp(min=1, max=x.shape[-1])
        x = mask_padding(x, lengths).unsqueeze(1)  # (B, 1, n_features, F)
        for conv in self.subsampling:
            lengths = conv_lengths(lengths, 3, 2, padding=1)
            x = mask_padding(conv(x).relu(), lengths)  # (B, D, M', F')
        return self.project(x.flatten(1, 2).transpose(1, 2)), lengths  # (B, F', D)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x, lengths = self.subsample(x, lengths)  # (B, F', D), (B,)
        valid = time_mask(lengths, x.shape[1])  # (B, F')
        for layer in self.encoder.conformer_layers:
            x = conformer_layer(layer, x, valid)  # (B, F', D)
        return self.head(mean_pool(x.transpose(1, 2), lengths))  # (B, n_classes)
