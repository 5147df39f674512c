"""Feature front-ends and augmentations: ``nn.Module``s on batches, on any device."""

from ser.transforms.frontends import (
    MFCC,
    FeatureName,
    LogMel,
    MelImage,
    Waveform,
    build_frontend,
)
from ser.transforms.handcrafted import Handcrafted

__all__ = ["FeatureName", "Handcrafted", "LogMel", "MFCC", "MelImage", "Waveform", "build_frontend"]
