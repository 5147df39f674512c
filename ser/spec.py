"""The self-describing part of a checkpoint: what inference needs to rebuild the model."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser.errors import SERError

#: Key of the inference spec inside a checkpoint dict.
SPEC_KEY = "ser"


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def factory_spec(factory: Any) -> dict:
    """``{"class_path", "init_args"}`` of a net factory.

    The factory is what the CLI builds from YAML (a partial of the net class), a dict already in
    that form, or a bare net class.
    """
    if isinstance(factory, dict):
        return {
            "class_path": factory["class_path"],
            "init_args": dict(factory.get("init_args", {})),
        }
    if isinstance(factory, functools.partial):
        cls = next(a for a in (factory.func, *factory.args) if isinstance(a, type))
        return {"class_path": class_path(cls), "init_args": dict(factory.keywords)}
    if isinstance(factory, type):
        return {"class_path": class_path(factory), "init_args": {}}
    raise TypeError(f"cannot describe net factory {factory!r}")


def build_net(spec: dict, n_classes: int, n_features: int, sample_rate: int) -> nn.Module:
    """Instantiate the net described by :func:`factory_spec`; only classes of ``ser.models``."""
    module_name, _, name = spec["class_path"].rpartition(".")
    if not module_name.startswith("ser.models"):
        raise ValueError(
            f"refusing to build {spec['class_path']!r}: nets must come from ser.models"
        )
    cls = getattr(importlib.import_module(module_name), name)
    return cls(n_classes, n_features, sample_rate, **spec["init_args"])


def read_checkpoint(path: Path, what: str) -> Any:
    """``torch.load`` a checkpoint with ``weights_only=True`` (pickled code is refused, not run).

    Args:
        path: the file.
        what: how the error names it, e.g. the path or ``--ckpt_path PATH``.

    Raises:
        SERError: the file is damaged or holds more than tensors and plain data.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # unpickling reports every kind of damage with a different class
        raise SERError(
            f"{what}: not a ser checkpoint or exported model ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0]}); ser loads checkpoints with weights_only=True"
        ) from None
