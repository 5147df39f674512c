"""Any other corpus through a CSV manifest: ``path,label[,speaker][,split][,gender]``."""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.emotions import EMOTIONS, canonical
from ser.data.gender import read_genders
from ser.errors import CorpusNotFoundError, SERError

log = logging.getLogger("ser")

STAGES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
          "test": "test"}  # fmt: skip
LAYOUT = (
    "a CSV file with a header row: path,label[,speaker][,split]; paths relative to the CSV's "
    "folder (or absolute), labels emotion names, split train/val/test"
)


def read_manifest(manifest: Path) -> list[Clip]:
    """The clips a manifest lists; a clear error naming the row for a bad label or split."""
    if not manifest.is_file():
        raise CorpusNotFoundError(f"manifest {manifest} not found. Expected {LAYOUT}")
    try:
        return parse_manifest(manifest, manifest_text(manifest))
    except csv.Error as err:  # e.g. a NUL byte: a binary file
        raise SERError(
            f"manifest {manifest}: not a CSV text file ({err}). Expected {LAYOUT}"
        ) from None


def manifest_text(manifest: Path) -> str:
    """The manifest's text: UTF-8 (with or without a byte-order mark) or UTF-16 with its BOM
    (what spreadsheet programs save as "Unicode text")."""
    data = manifest.read_bytes()
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise SERError(
            f"manifest {manifest}: not {encoding.split('-sig')[0].upper()} text (byte "
            f"{data[err.start]:#04x} at position {err.start}); save it as UTF-8 (or UTF-16 with a "
            "byte-order mark)"
        ) from None


def parse_manifest(manifest: Path, text: str) -> list[Clip]:
    """The clips of a manifest's text (see :func:`read_manifest`)."""
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise SERError(f"manifest {manifest} needs columns path and label; it has {columns}")
        clips, rows = [], {}  # rows: file -> (row number, emotion) of its first listing
        for row_number, row in enumerate(reader, start=2):  # row 1 is the header
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            where = f"manifest {manifest}, row {row_number}"
            try:
                emotion = canonical(row["label"])
            except SERError:
                raise SERError(
                    f"{where}: unknown label {row['label']!r}; known labels: {', '.join(EMOTIONS)} "
                    "(and aliases such as anger, happiness, fear, ps)"
                ) from None
            stage = row.get("split") or None
            if stage is not None:
                if stage.lower() not in STAGES:
                    raise SERError(f"{where}: split {stage!r} is not one of train, val, test")
                stage = STAGES[stage.lower()]
            path = Path(row["path"]).expanduser()
            path = path if path.is_absolute() else manifest.parent / path
            key = path.resolve()
            if key in rows:
                first, label = rows[key]
                if label != emotion:
                    raise SERError(
                        f"manifest {manifest}: rows {first} and {row_number} give {path} two labels "
                        f"({label}, {emotion}); keep one of the rows"
                    )
                log.warning("manifest %s: rows %d and %d both list %s; using it once", manifest,
                            first, row_number, path)  # fmt: skip
                continue
            rows[key] = (row_number, emotion)
            clips.append(Clip(path=path, emotion=emotion, speaker=row.get("speaker") or "unknown",
                              stage=stage))  # fmt: skip
    if not clips:
        raise CorpusNotFoundError(f"manifest {manifest} lists no clips")
    return clips


class ManifestCorpus(SERDataModule):
    """A corpus described by a CSV manifest, one clip per row: ``path,label[,speaker][,split]``.

    Classes are the labels found, in alphabetical order. Speaker-independent splits need the
    ``speaker`` column; ``split: predefined`` needs the ``split`` column. Missing or unreadable
    files are skipped with a warning naming each.

    Args:
        manifest: the CSV file.
        root: unused (paths are relative to the manifest's folder); kept for ``--data.root``.
        All other arguments are those of :class:`SERDataModule`.
    """

    SOURCE = "a CSV manifest you write"
    LAYOUT = LAYOUT

    def __init__(self, manifest: str, root: str | None = None, **kwargs) -> None:
        self.manifest = Path(manifest).expanduser()
        self._clips = read_manifest(self.manifest)
        self.EMOTIONS = tuple(sorted({c.emotion for c in self._clips}))
        super().__init__(root=root if root is not None else str(self.manifest.parent), **kwargs)

    def cache_name(self) -> str:
        return f"Manifest-{self.manifest.stem}"

    def scan(self, root: Path) -> list[Clip]:
        return list(self._clips)

    def speaker_gender(self, speaker: str) -> str | None:
        """From the manifest's optional ``gender`` column (m/f, male/female, or any value)."""
        if not hasattr(self, "_genders"):
            self._genders = read_genders(self.manifest, "speaker", "gender")
        return self._genders.get(speaker)
