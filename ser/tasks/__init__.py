"""LightningModules: losses, the shared step, metrics and optimisers."""

from ser.tasks.classification import EmotionClassifier
from ser.tasks.vae import VAEClassifier

__all__ = ["EmotionClassifier", "VAEClassifier"]
