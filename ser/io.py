"""Atomic file writes: a later run never trusts a half-written file."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ser.errors import SERError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600; the file gets what open() would have given it (0666 less the umask)
        tmp_path.chmod(0o666 & ~_umask())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as err:
        if _out_of_space(err, path.parent):
            kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
            raise SERError(
                f"{path}: no space left on device; free some space on it or write elsewhere "
                f"(--trainer.logger.init_args.save_dir, --output); {kept}"
            ) from err
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


#: Below this many free bytes a failed write is taken for a full disk.
NEARLY_FULL = 64 * 2**20


def _out_of_space(err: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ``ENOSPC``/``EDQUOT``, or a writer that loses the
    error number (torch's zip writer says ``unexpected pos``) on a nearly full disk."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def ensure_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any long work.

    Args:
        folder: the folder results will go to.
        what: the option or setting that chose it, named in the error (e.g. ``--output``).

    Raises:
        SERError: the folder cannot be created or written to.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ser-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SERError(
            f"{what}: cannot write to {folder} ({err.strerror or err}); choose a writable folder"
        ) from None
    return folder


def cache_root() -> Path:
    """The folder of everything ``ser`` caches: ``$SER_CACHE_DIR``, else ``~/.cache/ser``;
    checked once per process that it can be written (one error naming the setting)."""
    return _writable(os.environ.get("SER_CACHE_DIR") or "")


@functools.cache
def _writable(setting: str) -> Path:
    folder = Path(setting or Path.home() / ".cache" / "ser").expanduser()
    what = "SER_CACHE_DIR (ser's cache folder)" if setting else "~/.cache/ser (set SER_CACHE_DIR)"
    return ensure_writable(folder, what)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created) for the block; other processes wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): atomic renames alone keep the file whole
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def refuse_to_replace(paths: list[str | Path], overwrite: bool, what: str) -> None:
    """The one policy of every command that writes: a file the user already has is replaced only
    with ``--overwrite``, checked before any work.

    Args:
        paths: the files the command is about to write.
        overwrite: the user's ``--overwrite``.
        what: the option that chose them, for the error (e.g. ``--output out.csv``).

    Raises:
        SERError: naming the first file that exists.
    """
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more it would write)" if len(existing) > 1 else ""
        raise SERError(
            f"{what}: {existing[0]} already exists{more}; ser replaces no file you have without "
            "--overwrite: choose another name or folder, or add --overwrite"
        )
