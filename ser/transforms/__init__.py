"""Feature front-ends and augmentations: ``nn.Module``s on batches, on any device."""

from ser.transforms.frontends import MFCC, FeatureName, LogMel, Waveform, build_frontend

__all__ = ["FeatureName", "LogMel", "MFCC", "Waveform", "build_frontend"]
