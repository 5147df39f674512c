"""Feature front-ends, augmentations and the feature pipeline: ``nn.Module``s on batches, on any
device."""

from ser.transforms.encoders import SpeechEncoder
from ser.transforms.frontends import MFCC, LogMel, MelImage, Waveform
from ser.transforms.handcrafted import Handcrafted
from ser.transforms.pipeline import Augmentation, FeaturePipeline, FrontendFactory
from ser.transforms.pitch import LogMelPitch
from ser.transforms.voice import VoiceEmbedding

__all__ = [
    "Augmentation", "FeaturePipeline", "FrontendFactory", "Handcrafted", "LogMel", "LogMelPitch", "MFCC",
    "MelImage", "SpeechEncoder", "VoiceEmbedding", "Waveform",
]  # fmt: skip
