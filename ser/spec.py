"""The self-describing part of a checkpoint: what inference needs to rebuild the model.

A checkpoint written by ``ser fit`` holds, under :data:`SPEC_KEY`, one plain-data dict (loadable
with ``weights_only=True``)::

    {"version": 2, "class_names": [...], "sample_rate": 16000, "n_features": 64,
     "pipeline": {"frontend": {"class_path", "init_args"}, "denoise": {...} | None},
     "net": {"class_path", "init_args"}, "corpus": "ser.data.RAVDESS",
     "temperature": 1.3}

``temperature`` (optional, 1.0 when absent) divides the logits: it is fitted after fit by
:mod:`ser.calibration`.

:meth:`ser.tasks.EmotionClassifier.on_save_checkpoint` writes it (from what the CLI links into
the task) and :func:`read_spec` is the one function that reads it.
"""

from __future__ import annotations

import functools
import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser.errors import SERError

#: Key of the inference spec inside a checkpoint dict.
SPEC_KEY = "ser"
#: Version of the spec's layout; 2: the feature pipeline (front-end by class path, denoise).
SPEC_VERSION = 2
SPEC_FIELDS = ("class_names", "sample_rate", "n_features", "pipeline", "net")


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def factory_spec(factory: Any) -> dict:
    """``{"class_path", "init_args"}`` of a factory.

    The factory is what the CLI builds from YAML (a partial of a class), a dict already in that
    form, or a bare class.
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
    raise TypeError(f"cannot describe factory {factory!r}")


def build_module(spec: dict, package: str, *args: Any) -> nn.Module:
    """Instantiate ``spec`` (see :func:`factory_spec`) with ``args`` first; only classes of
    ``package`` (``ser.models``, ``ser.transforms``): a checkpoint never names code to import."""
    module_name, _, name = spec["class_path"].rpartition(".")
    if not module_name.startswith(package):
        raise SERError(f"refusing to build {spec['class_path']!r}: it must come from {package}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise SERError(
            f"{spec['class_path']!r} does not exist in this version of ser; use the ser the "
            "model was trained with"
        ) from None
    return cls(*args, **spec["init_args"])


def build_net(spec: dict, n_classes: int, n_features: int, sample_rate: int) -> nn.Module:
    """Instantiate the net described by :func:`factory_spec`; only classes of ``ser.models``."""
    return build_module(spec, "ser.models", n_classes, n_features, sample_rate)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``ser export``): those hold compiled code,
    ``torch.save`` archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


def read_checkpoint(path: Path, what: str) -> Any:
    """``torch.load`` a checkpoint with ``weights_only=True`` (pickled code is refused, not run).

    Args:
        path: the file.
        what: how the error names it, e.g. the path or ``--ckpt_path PATH``.

    Raises:
        SERError: the file is empty, damaged, a TorchScript export, or holds more than tensors
            and plain data.
    """
    if path.is_file() and path.stat().st_size == 0:
        raise SERError(f"{what}: an empty file (0 bytes), not a checkpoint; a copy or a save died")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise SERError(
            f"{what}: not a ser checkpoint or exported model: not the zip archive torch.save "
            "writes (a truncated or damaged copy, or another kind of file)"
        )
    if is_torchscript(path):
        raise SERError(
            f"{what}: a TorchScript export (ser export), not a training checkpoint; give the "
            "run's .ckpt (lightning_logs/<name>/version_N/checkpoints/), or ser predict the export"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise SERError(f"{what}: not a ser checkpoint or exported model ({err})") from None
        raise SERError(  # torch's own text tells how to load it anyway: not what a user should do
            f"{what}: not a ser checkpoint or exported model: it holds pickled Python objects, "
            "which could run code when loaded; ser loads tensors and plain data only"
        ) from None
    except Exception as err:  # unpickling reports every kind of damage with a different class
        raise SERError(
            f"{what}: not a ser checkpoint or exported model ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0]}); ser loads checkpoints with weights_only=True"
        ) from None


def check_finite(weights: dict[str, torch.Tensor], what: str) -> None:
    """Refuse weights that hold NaN or infinite values: every answer of such a net is NaN.

    Raises:
        SERError: naming how many tensors and the first one.
    """
    broken = [k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:  # a diverged run
        raise SERError(
            f"{what}: {len(broken)} weight tensors hold NaN or infinite values (e.g. {broken[0]}); "
            "the run diverged: retrain, e.g. with a lower learning rate"
        )


def check_fits(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str,
               spec: dict) -> None:  # fmt: skip
    """Refuse a checkpoint whose weights do not fit the model built here (another net, other
    sizes, another class count), naming the first difference and what the checkpoint holds.

    Args:
        weights: the checkpoint's ``state_dict``.
        expected: the ``state_dict`` of the model the weights are for.
        what: how the error names the checkpoint.
        spec: the checkpoint's spec (:func:`read_spec`).
    """
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    shapes = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if not (missing or extra or shapes):
        return
    if shapes:
        key = shapes[0]
        first = f"{key} is {list(weights[key].shape)} there, {list(expected[key].shape)} here"
    else:
        first = f"{(missing or extra)[0]} is {'missing' if missing else 'extra'}"
    net = spec["net"]
    raise SERError(
        f"{what}: its weights do not fit the model this config builds ({first}); it holds a "
        f"{net['class_path'].rpartition('.')[2]} {net['init_args']} for {len(spec['class_names'])} "
        f"classes: use the config of the run that wrote it (its folder's config.yaml)"
    )


def read_spec(checkpoint: Any, what: str) -> dict:
    """The spec of a loaded checkpoint, checked; one clear error for anything else.

    Raises:
        SERError: not a checkpoint of ``ser fit``, or one from a ser older than this spec layout.
    """
    spec = checkpoint.get(SPEC_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(spec, dict):
        raise SERError(
            f"{what}: a checkpoint without the {SPEC_KEY!r} entry (class names, sample rate, "
            "feature pipeline); it was not saved by `ser fit`"
        )
    if spec.get("version") != SPEC_VERSION:
        raise SERError(
            f"{what}: written by an older ser (checkpoint layout {spec.get('version', 1)}, this ser "
            f"reads {SPEC_VERSION}: no feature-pipeline entry); retrain it with this version"
        )
    missing = [k for k in SPEC_FIELDS if spec.get(k) is None]
    if missing:
        raise SERError(
            f"{what}: its {SPEC_KEY!r} entry lacks {', '.join(missing)} (a task trained outside "
            "`ser fit` must be given the data's pipeline_spec as its pipeline)"
        )
    return spec
