"""LightningModules: losses, the shared step, metrics and optimisers."""

from ser.tasks.classification import EmotionClassifier

__all__ = ["EmotionClassifier"]
