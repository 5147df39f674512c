"""Decoded-audio cache: each corpus is decoded (mixed down, resampled...) once, then memory-mapped.

One file per corpus root and decode settings, ``<cache root>/audio/<Corpus>-<key>.cache``: every
clip's float32 waveform end to end, then a JSON index of ``(path, size, mtime_ns, offset, length,
error)`` per file, its byte length (8 bytes, little-endian) and :data:`MAGIC`. A later run reuses the
entries whose file identity still matches and decodes only new or changed files.

The file is built clip by clip (a builder holds one clip in memory, not the corpus), written under a
temporary name and renamed (readers never see half a file). A lock file makes every other process
on the machine (the other DDP ranks, a second run) wait while one builds, then reuse its work; a
temporary file that a killed build left behind is deleted by the next one. Every process maps the
file copy-on-write, so N processes on one machine share one copy of the audio in the page cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ser.errors import AudioError
from ser.io import atomic_path, cache_root, file_lock

log = logging.getLogger("ser")

#: Bumped when the file format changes: older files are then rebuilt, never misread.
FORMAT = 2
#: The last bytes of a complete cache file.
MAGIC = b"SERAUDIO"

Decoded = torch.Tensor | AudioError  # a waveform, or why the file could not be used


def file_identity(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of ``path``: a changed file gets a new identity; ``(-1, -1)`` if absent."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


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
        self.path = directory / f"{name}-{key.hexdigest()[:16]}.cache"

    def _read(self) -> dict[str, tuple[tuple[int, int], Decoded]]:
        """The entries of the cache file (path -> (identity, decoded)); empty if none or unusable.
        The waveforms are views of one copy-on-write memory map of the file."""
        if not self.path.is_file():
            return {}
        try:
            with open(self.path, "rb") as f:
                f.seek(-8 - len(MAGIC), os.SEEK_END)
                n_bytes, magic = int.from_bytes(f.read(8), "little"), f.read(len(MAGIC))
                if magic != MAGIC:
                    raise ValueError("no end marker (an unfinished or foreign file)")
                f.seek(-8 - len(MAGIC) - n_bytes, os.SEEK_END)
                header = json.loads(f.read(n_bytes))
            if header["format"] != FORMAT or header["settings"] != self.settings:
                return {}
            n_samples = header["n_samples"]  # every clip end to end
            audio = (
                torch.from_numpy(np.memmap(self.path, np.float32, mode="c", shape=(n_samples,)))
                if n_samples
                else torch.zeros(0)
            )
            entries = {}
            for path, size, mtime, offset, length, error in header["index"]:
                value = AudioError(error) if error else audio[offset : offset + length]
                entries[path] = ((size, mtime), value)
            return entries
        except Exception as err:  # a foreign or damaged file: rebuild rather than fail
            log.warning("ignoring unreadable audio cache %s (%s); rebuilding it", self.path, err)
            return {}

    def _write(
        self,
        wanted: dict[str, tuple[int, int]],
        entries: dict[str, tuple[tuple[int, int], Decoded]],
        decode: Callable[[Path], torch.Tensor],
    ) -> None:
        """Write the file of ``wanted`` (path -> identity): each clip from ``entries`` if there,
        else decoded now; one clip in memory at a time."""
        stale = [p for p in wanted if p not in entries]
        if stale:
            log.info("decoding %d of %d files into %s", len(stale), len(wanted), self.path)
        progress = tqdm(total=len(stale), desc=f"decoding {self.path.stem}", unit="file",
                        mininterval=1)  # fmt: skip
        index, offset = [], 0
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f, progress:
            for path, ident in sorted(wanted.items()):
                value = entries[path][1] if path in entries else None
                if value is None:
                    try:
                        value = decode(Path(path))
                    except AudioError as err:
                        value = err
                    progress.update()
                if isinstance(value, AudioError):
                    index.append((path, *ident, 0, 0, str(value)))
                    continue
                samples = value.detach().to(torch.float32).contiguous().numpy()
                f.write(samples.tobytes())
                index.append((path, *ident, offset, samples.size, ""))
                offset += samples.size
            header = {"format": FORMAT, "settings": self.settings, "n_samples": offset,
                      "index": index}  # fmt: skip
            header_bytes = json.dumps(header).encode()
            f.write(header_bytes + len(header_bytes).to_bytes(8, "little") + MAGIC)

    def remove_leftovers(self) -> None:
        """Delete the temporary files of builds that were killed (called with the lock held, so
        no live build owns one)."""
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            log.info("removing %s, left by an interrupted cache build", leftover)
            leftover.unlink(missing_ok=True)

    def decode_all(
        self, paths: Sequence[Path], decode: Callable[[Path], torch.Tensor]
    ) -> list[Decoded]:
        """The decoded audio of each path: from the cache, else ``decode(path)`` (then cached).

        Args:
            paths: the files, in the order wanted.
            decode: the decoder; an :class:`AudioError` it raises is cached and returned.
        """
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            self.remove_leftovers()
            entries = self._read()
            wanted = {str(p): file_identity(Path(p)) for p in paths}
            fresh = {p: v for p, v in entries.items() if p in wanted and v[0] == wanted[p]}
            if len(fresh) < len(wanted) or len(entries) > len(fresh):
                self._write(wanted, fresh, decode)
                del entries, fresh  # the old file's map
                entries = self._read()  # this process too reads the shared map, not its copies
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
