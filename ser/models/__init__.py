"""Pure ``nn.Module`` networks. Each takes ``(n_classes, n_features, sample_rate, ...)`` and maps
``(features (B, n_features, F), feature_lengths (B,))`` to logits ``(B, n_classes)``."""

from ser.models.cnn2d import CNN2D
from ser.models.cnn_lstm import CNNLSTM1D, CNNLSTM2D
from ser.models.conformer import Conformer
from ser.models.ecapa import ECAPA
from ser.models.encoder_head import EncoderHead
from ser.models.finetune import FineTunedEncoder
from ser.models.lstm import StackedLSTM
from ser.models.m5 import M5
from ser.models.resnet import ResNet
from ser.models.vae import VAE

__all__ = [
    "CNN2D",
    "CNNLSTM1D",
    "CNNLSTM2D",
    "Conformer",
    "ECAPA",
    "EncoderHead",
    "FineTunedEncoder",
    "M5",
    "ResNet",
    "StackedLSTM",
    "VAE",
]
