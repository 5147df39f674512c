"""Inference: load a checkpoint, an export or an ensemble, predict recordings, export a model.

Lightning-free on purpose, so ``ser predict`` starts fast and runs without the training stack.
"""

from ser.inference.models import (
    CLASSES_FILE,
    EmotionModel,
    Ensemble,
    ExportedModel,
    load_model,
    load_models,
    model_info,
)
from ser.inference.predict import Prediction, clip_probabilities, predict_files

__all__ = [
    "CLASSES_FILE", "EmotionModel", "Ensemble", "ExportedModel", "Prediction",
    "clip_probabilities", "load_model", "load_models", "model_info", "predict_files",
]  # fmt: skip
