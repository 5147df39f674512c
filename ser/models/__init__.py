"""Pure ``nn.Module`` networks. Each takes ``(n_classes, n_features, sample_rate, ...)`` and maps
``(features (B, n_features, F), feature_lengths (B,))`` to logits ``(B, n_classes)``."""

from ser.models.cnn2d import CNN2D

__all__ = ["CNN2D"]
