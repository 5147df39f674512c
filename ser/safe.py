"""Reading files that someone else may have written: tensors and plain data, never code.

Every tensor file ``ser`` reads (checkpoints, encoder weights, caches) goes through
:func:`load_tensors`: ``torch.load(..., weights_only=True)`` or safetensors, so a pickle that
would run code is refused with one line instead of run. A path written inside a model file is
read only where :func:`stored_path` allows it: inside that model's own folder.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ser.errors import SERError

#: The first bytes of a safetensors file are its header's length; torch.save writes a zip archive.
SAFETENSORS_SUFFIX = ".safetensors"


def load_tensors(path: str | Path, what: str, mmap: bool = False, legacy: bool = False) -> Any:
    """The tensors and plain data of a ``torch.save`` archive (``weights_only=True``) or of a
    ``.safetensors`` file, on the CPU.

    Args:
        path: the file.
        what: how errors name it (the option or the file), e.g. ``--ckpt_path PATH``.
        mmap: map a torch archive's tensors instead of reading them (large checkpoints).
        legacy: also read the format torch wrote before 1.6 (not a zip archive; weights that a
            package ships, e.g. resemblyzer's), with the same ``weights_only`` unpickler.

    Raises:
        SERError: the file is missing, empty, damaged or holds pickled Python objects (which
            could run code when loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise SERError(f"{what}: no such file")
    if path.stat().st_size == 0:
        raise SERError(f"{what}: an empty file (0 bytes); a copy or a save died")
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise SERError(f"{what}: not a readable safetensors file ({err})") from None
    if not (legacy or zipfile.is_zipfile(path)):
        raise SERError(
            f"{what}: not the zip archive torch.save writes (a truncated or damaged copy, a "
            "pickle of an older torch, or another kind of file)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise SERError(f"{what}: damaged ({first_line(err)})") from None
        raise SERError(  # torch's own text tells how to load it anyway: not what a user should do
            f"{what}: it holds pickled Python objects, which could run code when loaded; ser loads "
            "tensors and plain data only (torch.load weights_only=True)"
        ) from None
    except Exception as err:  # unpickling reports every kind of damage with a different class
        raise SERError(f"{what}: damaged ({type(err).__name__}: {first_line(err)})") from None


def first_line(err: BaseException) -> str:
    """The first line of an error's text (its class name when it has none), at most 200 chars."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def stored_path(value: str, folder: Path) -> Path | None:
    """A path written inside a model file, as this machine may read it: relative to the model's
    own ``folder`` and inside it (no ``~``, no ``..`` out, no absolute path elsewhere, no link
    out); ``None`` when it points anywhere else.

    Only the user names files outside a model's folder, on the command line.
    """
    root = folder.resolve()
    path = (root / value).resolve()  # an absolute value replaces root; links are followed
    return path if path.is_relative_to(root) else None
