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

import copy
import functools
import importlib
import inspect
import logging
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser.errors import SERError
from ser.safe import load_tensors, stored_path

log = logging.getLogger("ser")

#: Key of the inference spec inside a checkpoint dict.
SPEC_KEY = "ser"
#: Version of the spec's layout; 2: the feature pipeline (front-end by class path, denoise).
SPEC_VERSION = 2
SPEC_FIELDS = ("class_names", "sample_rate", "n_features", "pipeline", "net")
#: Key of the OOD statistics inside a spec (:mod:`ser.inference.ood`; absent: no OOD score).
OOD_KEY = "ood"


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


def resolve_class(class_path_: str, package: str, what: str = "") -> type:
    """The class ``class_path_`` names, only from ``package`` (``ser.models``, ``ser.transforms``,
    ``ser.data``): a model file never names code to import.

    Raises:
        SERError: another package, or no such class in this version of ser.
    """
    prefix = f"{what}: " if what else ""
    module_name, _, name = str(class_path_).rpartition(".")
    if not (module_name == package or module_name.startswith(package + ".")):
        raise SERError(f"{prefix}refusing to build {class_path_!r}: it must come from {package}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        cls = None
    if not isinstance(cls, type):
        raise SERError(
            f"{prefix}{class_path_!r} does not exist in this version of ser; use the ser the "
            "model was trained with"
        )
    return cls


def build_module(spec: dict, package: str, *args: Any) -> nn.Module:
    """Instantiate ``spec`` (see :func:`factory_spec`) with ``args`` first; only classes of
    ``package`` (``ser.models``, ``ser.transforms``): a checkpoint never names code to import."""
    return resolve_class(spec["class_path"], package)(*args, **spec["init_args"])


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
    if is_torchscript(path):
        raise SERError(
            f"{what}: a TorchScript export (ser export), not a training checkpoint; give the "
            "run's .ckpt (lightning_logs/<name>/version_N/checkpoints/), or ser predict the export"
        )
    return load_tensors(path, f"{what}: not a ser checkpoint or exported model", mmap=True)


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


def read_spec(checkpoint: Any, what: str, folder: Path | None = None,
              encoder_weights: Path | None = None) -> dict:  # fmt: skip
    """The spec of a loaded checkpoint, checked by :func:`check_spec`; one clear error for
    anything else.

    Args:
        checkpoint: the loaded file.
        what: how errors name the file.
        folder: the model's own folder (where a path it stores may point).
        encoder_weights: the encoder weights the user named (:func:`check_spec`).

    Raises:
        SERError: not a checkpoint of ``ser fit``, one from a ser older than this spec layout, or
            one whose spec says something this ser cannot use.
    """
    spec = checkpoint.get(SPEC_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(spec, dict):
        raise SERError(
            f"{what}: a checkpoint without the {SPEC_KEY!r} entry (class names, sample rate, "
            "feature pipeline); it was not saved by `ser fit`"
        )
    return check_spec(spec, what, folder, encoder_weights)


#: A torchaudio bundle name (``WAVLM_BASE_PLUS``) and a Hugging Face Hub id (``org/model``).
BUNDLE_NAME = re.compile(r"[A-Z0-9_]+")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
#: Settings of a model file that name a file or folder (read only inside the model's folder).
PATH_SETTINGS = ("weights", "bundle")
#: Settings of a model file that name the exact weights it was trained with.
HASH_SETTING = "weights_sha256"


#: What a refused number of a model file says of it.
EDITED = "the file is damaged or was edited by hand"


def check_number(value: Any, what: str, field: str, minimum: float | None = None,
                 maximum: float | None = None, positive: bool = False,
                 whole: bool = False, advice: str = EDITED) -> float:  # fmt: skip
    """``value`` of a model file's ``field`` as a number, refused unless it is finite, a whole
    number when ``whole``, ``> 0`` when ``positive`` and within ``[minimum, maximum]``; the
    error ends with ``advice``.

    Raises:
        SERError: naming ``what`` (the file), the field and the value.
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not whole or float(value).is_integer())
    ok = ok and (not positive or value > 0)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        rules = [r for r, on in (("positive", positive), ("whole", whole)) if on]
        if minimum is not None or maximum is not None:
            rules.append(f"in [{minimum if minimum is not None else '-inf'}, "
                         f"{maximum if maximum is not None else 'inf'}]")  # fmt: skip
        raise SERError(
            f"{what}: {field} is {value!r}; it must be a finite{' ' if rules else ''}"
            f"{', '.join(rules)} number: {advice}"
        )
    return int(value) if whole else float(value)


def check_spec(spec: dict, what: str, folder: Path | None = None,
               encoder_weights: Path | None = None) -> dict:  # fmt: skip
    """What a model file (a checkpoint's spec, a model folder's ``config.json``) says, checked
    before anything is built from it: the one validation ``ser test``, ``ser predict``,
    ``ser export``, teachers, the server and every loader share.

    Checked: the layout version; ``class_names`` (two or more distinct names);
    ``sample_rate`` (whole Hz, 1000 to 768000); ``n_features``; ``temperature`` (finite,
    positive); the OOD statistics and threshold (:func:`check_ood`); the front-end and net
    (classes of ``ser.transforms`` / ``ser.models`` only, their settings by name); ``denoise``; ``corpus`` (classes of ``ser.data`` only). A path a setting
    names (``weights``, a Hugging Face ``bundle`` folder) is kept only inside the model's own
    ``folder``; a weights file's hash (``weights_sha256``) must be there when the front-end
    records one. Only the user names a file elsewhere, on the command line: ``encoder_weights``.

    Args:
        spec: the spec as read from the file (not changed).
        what: how errors name the file (and the ensemble member).
        folder: the model's own folder; ``None``: no stored path is read.
        encoder_weights: the front-end's weights file the user named (``--encoder-weights``),
            read wherever it is, instead of the one the model file names (still hash-checked).

    Returns:
        A copy of ``spec`` with stored paths made absolute (inside ``folder``) or dropped.

    Raises:
        SERError: naming ``what`` and the field.
    """
    if not isinstance(spec, dict):
        raise SERError(f"{what}: the spec is a {type(spec).__name__}, not a mapping")
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
    spec = copy.deepcopy(spec)
    check_class_names(spec["class_names"], what)
    check_number(spec["sample_rate"], what, "sample_rate", 1000, 768000, whole=True)
    check_number(spec["n_features"], what, "n_features", 1, whole=True)
    if spec.get("temperature") is not None:
        check_number(spec["temperature"], what, "temperature", positive=True)
    if spec.get(OOD_KEY) is not None:
        check_ood(spec[OOD_KEY], what)
    spec["pipeline"] = check_pipeline(spec["pipeline"], what, "pipeline", folder, encoder_weights)
    check_factory(spec["net"], "ser.models", what, "net", folder)
    corpus = spec.get("corpus")
    if corpus is not None and not (
        isinstance(corpus, str) and all(p.startswith("ser.") for p in corpus.split("+"))
    ):
        raise SERError(f"{what}: corpus {corpus!r} must name ser's own corpus classes (ser.data.*)")
    return spec


#: The OOD entry's fields (:class:`ser.inference.ood.OODStats`); ``pipeline`` only in exports.
OOD_FIELDS = ("mean", "std", "threshold", "accept", "n_clips")


def check_ood(entry: Any, what: str, exported: bool = False) -> dict:
    """The OOD statistics and threshold of a model file (:data:`OOD_KEY`): ``mean`` and ``std``
    lists of one length, finite, every ``std`` positive; ``threshold`` finite and ``>= 0`` (a
    root mean square of z-scores); ``accept`` in (0, 1]; ``n_clips`` a whole number.

    Args:
        entry: the entry as read.
        what: how errors name the file (and the ensemble member).
        exported: an export's entry, which also carries the front-end's ``pipeline``.

    Raises:
        SERError: naming ``what`` and the field, e.g. ``ood.std[3]``.
    """
    advice = (f"its {OOD_KEY!r} entry is damaged: refit it with ser test --ckpt_path CKPT "
              "--recalibrate true, or delete the entry")  # fmt: skip
    damaged = f"; {advice}"
    allowed = (*OOD_FIELDS, "pipeline") if exported else OOD_FIELDS
    if not isinstance(entry, dict):
        raise SERError(f"{what}: {OOD_KEY} is a {type(entry).__name__}, not a mapping{damaged}")
    unknown = [k for k in entry if k not in allowed]
    if unknown:
        raise SERError(f"{what}: {OOD_KEY}.{unknown[0]} is not an OOD setting{damaged}")
    lists = {}
    for key in ("mean", "std"):
        values = entry.get(key)
        if not (isinstance(values, list) and values):
            raise SERError(
                f"{what}: {OOD_KEY}.{key} is {values!r:.60}, not a list of numbers{damaged}"
            )
        lists[key] = values
    if len(lists["mean"]) != len(lists["std"]):
        raise SERError(
            f"{what}: {OOD_KEY}.mean holds {len(lists['mean'])} numbers, {OOD_KEY}.std "
            f"{len(lists['std'])}: one per feature number each{damaged}"
        )
    for key, values in lists.items():
        for i, value in enumerate(values):
            check_number(value, what, f"{OOD_KEY}.{key}[{i}]", positive=key == "std",
                         advice=advice)  # fmt: skip
    check_number(entry.get("threshold"), what, f"{OOD_KEY}.threshold", minimum=0, advice=advice)
    if "accept" in entry:
        check_number(entry["accept"], what, f"{OOD_KEY}.accept", maximum=1, positive=True,
                     advice=advice)  # fmt: skip
    if "n_clips" in entry:
        check_number(entry["n_clips"], what, f"{OOD_KEY}.n_clips", minimum=0, whole=True,
                     advice=advice)  # fmt: skip
    return entry


def check_pipeline(pipeline: Any, what: str, field: str, folder: Path | None,
                   encoder_weights: Path | None = None) -> dict:  # fmt: skip
    """A feature pipeline's spec (``{"frontend", "denoise"}``) of a model file, checked as
    :func:`check_spec` checks the model's own (in place; returned).

    Raises:
        SERError: naming ``what`` and ``field``.
    """
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("frontend"), dict):
        raise SERError(f"{what}: {field} must be a mapping with a frontend entry")
    check_factory(pipeline["frontend"], "ser.transforms", what, f"{field}.frontend", folder,
                  encoder_weights)  # fmt: skip
    denoise = pipeline.get("denoise")
    plain = str | int | float | bool | type(None)
    if denoise is not None and not (
        isinstance(denoise, dict) and all(isinstance(v, plain) for v in denoise.values())
    ):
        raise SERError(f"{what}: {field}.denoise must be null or a mapping of plain settings")
    return pipeline


def check_class_names(names: Any, what: str) -> list[str]:
    """Two or more distinct, non-empty class names.

    Raises:
        SERError: naming ``what`` and ``class_names``.
    """
    if not (isinstance(names, list) and all(isinstance(n, str) and n.strip() for n in names)):
        raise SERError(f"{what}: class_names must be a list of non-empty names, not {names!r}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise SERError(
            f"{what}: class_names {names} must hold two or more distinct names (a classifier "
            "of fewer classes gives every clip the same answer)"
        )
    return names


def check_factory(factory: Any, package: str, what: str, field: str, folder: Path | None,
                  encoder_weights: Path | None = None) -> None:  # fmt: skip
    """A ``{"class_path", "init_args"}`` of a model file, in place: the class from ``package``,
    settings it takes by name, stored paths resolved (:func:`ser.safe.stored_path`) or replaced
    by the weights file the user named (``encoder_weights``), the weights' hash present where
    the class records one."""
    if not (isinstance(factory, dict) and isinstance(factory.get("class_path"), str)):
        raise SERError(f"{what}: {field} must be a mapping with a class_path")
    args = factory.setdefault("init_args", {})
    if not isinstance(args, dict):
        raise SERError(f"{what}: {field}.init_args must be a mapping")
    cls = resolve_class(factory["class_path"], package, f"{what}: {field}.class_path")
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in args if not takes_any and (k not in params or k == "self")]
    if unknown:
        raise SERError(
            f"{what}: {field}.init_args.{unknown[0]}: {cls.__name__} takes no such setting; "
            "use the ser the model was trained with"
        )
    if encoder_weights is not None:
        if "weights" not in params:
            raise SERError(
                f"--encoder-weights {encoder_weights}: {what}: its front-end {cls.__name__} reads "
                "no encoder weights file; leave the option out"
            )
        args["weights"] = str(encoder_weights)  # the user's choice, read wherever it is
    for key in PATH_SETTINGS:
        value = args.get(key)
        if value is None or key not in params or (key == "weights" and encoder_weights):
            continue
        name = f"{field}.init_args.{key}"
        if not isinstance(value, str) or not value:
            raise SERError(f"{what}: {name} must be a name or a path, not {value!r}")
        if key == "bundle" and (BUNDLE_NAME.fullmatch(value) or HUB_ID.fullmatch(value)):
            inside = stored_path(value, folder) if folder is not None else None
            if inside is not None and inside.exists():
                args[key] = str(inside)  # a folder the model ships with
            continue  # a bundle name, or a Hub id read from the local Hugging Face cache
        inside = stored_path(value, folder) if folder is not None else None
        if inside is not None and (inside.is_file() if key == "weights" else inside.is_dir()):
            args[key] = str(inside)
        elif key == "weights":  # torch.hub's file of the bundle is read instead, hash-checked
            log.warning("%s: %s %s is not in the model's folder: not read (a model file names "
                        "files inside its own folder only; name it yourself with --encoder-weights "
                        "FILE); the encoder's weights are looked for in torch.hub's folder "
                        "($TORCH_HOME/hub/checkpoints)", what, name, value)  # fmt: skip
            args[key] = None
        else:
            raise SERError(
                f"{what}: {name} {value!r} is outside the model's folder; a model file may name "
                "files inside its own folder only: copy the encoder folder into it"
            )
    if HASH_SETTING in params:
        digest = args.get(HASH_SETTING)
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{16}", digest)):
            raise SERError(
                f"{what}: {field}.init_args.{HASH_SETTING} is {digest!r}, not the 16 hex digits "
                "that identify the encoder weights the model was trained with; a model file must "
                "say which weights it needs (export it again with this ser)"
            )


def check_info(info: Any, what: str) -> dict:
    """What an export carries beside its weights (``classes.json``: class names, sample rate,
    noise reduction, OOD statistics), checked as :func:`check_spec` checks a spec.

    Raises:
        SERError: naming ``what`` and the field.
    """
    if not isinstance(info, dict):
        raise SERError(f"{what}: must be a mapping with class_names and sample_rate")
    check_class_names(info.get("class_names"), what)
    check_number(info.get("sample_rate"), what, "sample_rate", 1000, 768000, whole=True)
    denoise = info.get("denoise")
    if denoise is not None and not isinstance(denoise, dict):
        raise SERError(f"{what}: denoise must be null or a mapping of plain settings")
    if info.get(OOD_KEY) is not None:
        check_ood(info[OOD_KEY], what, exported=True)
    return info
