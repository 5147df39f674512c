"""ser: speech emotion recognition with PyTorch Lightning."""

__version__ = "0.1.0"
