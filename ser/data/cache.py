"""Decoded-audio cache: each corpus is decoded (mixed down, resampled...) once, then memory-mapped.

One file per corpus root and decode settings, ``<cache root>/audio/<Corpus>-<key>.pt``, holding
every clip's waveform concatenated, with an index of ``(path, size, mtime_ns)`` per file. A later
run reuses the entries whose file identity still matches and decodes only new or changed files.
The file is written under a temporary name and renamed (readers never see half a file), and a lock
file makes a second process that starts at the same time wait and then reuse the first one's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ser.errors import AudioError
from ser.io import atomic_path

log = logging.getLogger("ser")

#: Bumped when the file format changes: older files are then rebuilt, never misread.
FORMAT = 1

Decoded = torch.Tensor | AudioError  # a waveform, or why the file could not be used


def cache_root() -> Path:
    """The folder of everything ``ser`` caches: ``$SER_CACHE_DIR``, else ``~/.cache/ser``."""
    return Path(os.environ.get("SER_CACHE_DIR") or Path.home() / ".cache" / "ser").expanduser()


def file_identity(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path``: a changed file gets a new identity; ``(-1, -1)`` if absent."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


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


class AudioCache:
    """The decoded audio of one corpus under one set of decode settings.

    Args:
        name: corpus name, the start of the file name (e.g. ``RAVDESS``).
        root: the corpus folder (part of the key, so two copies of a corpus do not collide).
        settings: everything that determines the decoder's output (``decode_settings()``).
        directory: where cache files go; default ``cache_root() / "audio"``.
    """

    def __init__(
        self, name: str, root: Path, settings: dict, directory: Path | None = None
    ) -> None:
        self.settings = {"root": str(Path(root).resolve()), **settings}
        key = hashlib.sha1(json.dumps(self.settings, sort_keys=True, default=str).encode())
        directory = Path(directory) if directory is not None else cache_root() / "audio"
        self.path = directory / f"{name}-{key.hexdigest()[:16]}.pt"

    def _read(self) -> dict[str, tuple[tuple[int, int], Decoded]]:
        """The entries of the cache file (path -> (identity, decoded)); empty if none or unusable."""
        if not self.path.is_file():
            return {}
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            if data["format"] != FORMAT or data["settings"] != self.settings:
                return {}
            audio = data["audio"]  # (total samples,) every clip end to end
            entries = {}
            for path, size, mtime, offset, length, error in data["index"]:
                value = AudioError(error) if error else audio[offset : offset + length]
                entries[path] = ((size, mtime), value)
            return entries
        except Exception as err:  # a foreign or damaged file: rebuild rather than fail
            log.warning("ignoring unreadable audio cache %s (%s); rebuilding it", self.path, err)
            return {}

    def _write(self, entries: dict[str, tuple[tuple[int, int], Decoded]]) -> None:
        index, pieces, offset = [], [], 0
        for path, ((size, mtime), value) in sorted(entries.items()):
            if isinstance(value, AudioError):
                index.append((path, size, mtime, 0, 0, str(value)))
            else:
                index.append((path, size, mtime, offset, value.numel(), ""))
                pieces.append(value)
                offset += value.numel()
        audio = torch.cat(pieces) if pieces else torch.zeros(0)
        data = {"format": FORMAT, "settings": self.settings, "index": index, "audio": audio}
        with atomic_path(self.path) as tmp:
            torch.save(data, tmp)

    def decode_all(
        self, paths: Sequence[Path], decode: Callable[[Path], torch.Tensor]
    ) -> list[Decoded]:
        """The decoded audio of each path: from the cache, else ``decode(path)`` (then cached).

        Args:
            paths: the files, in the order wanted.
            decode: the decoder; an :class:`AudioError` it raises is cached and returned.
        """
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            wanted = {str(p): file_identity(Path(p)) for p in paths}
            stale = [p for p, ident in wanted.items() if p not in entries or entries[p][0] != ident]
            if stale or set(entries) - set(wanted):
                if stale:
                    log.info("decoding %d of %d files into %s", len(stale), len(wanted), self.path)
                for p in tqdm(stale, desc=f"decoding {self.path.stem}", unit="file", mininterval=1):
                    try:
                        value: Decoded = decode(Path(p)).contiguous()
                    except AudioError as err:
                        value = err
                    entries[p] = (wanted[p], value)
                self._write({p: entries[p] for p in wanted})
        return [entries[str(p)][1] for p in paths]


def decode_uncached(paths: Sequence[Path], decode: Callable[[Path], torch.Tensor]) -> list[Decoded]:
    """Decode every path (no cache), an :class:`AudioError` in place of a file that fails."""
    out: list[Decoded] = []
    for p in tqdm(paths, desc="decoding", unit="file", mininterval=1):
        try:
            out.append(decode(Path(p)))
        except AudioError as err:
            out.append(err)
    return out
