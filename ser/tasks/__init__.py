"""LightningModules: losses, the shared step, metrics and optimisers."""

from ser.tasks.classification import EmotionClassifier
from ser.tasks.distill import Distillation
from ser.tasks.vae import VAEClassifier

__all__ = ["Distillation", "EmotionClassifier", "VAEClassifier"]
