"""Your own data as one folder per class: ``ROOT/<class>/*.wav``, optionally ``ROOT/Train|Test/...``."""

from __future__ import annotations

import re
from pathlib import Path

from ser.audio import audio_files
from ser.data.base import Clip, SERDataModule
from ser.data.emotions import EMOTIONS, canonical
from ser.data.splits import SplitSpec
from ser.errors import CorpusNotFoundError, SERError

#: Folder names (any case) that mark a predefined split, and the stage each one is.
STAGE_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}  # fmt: skip
LAYOUT = "ROOT/<class>/*.wav, or ROOT/Train/<class>/*.wav + ROOT/Test/<class>/*.wav"


def class_folders(root: Path) -> dict[Path, str | None]:
    """Each class folder under ``root`` -> its predefined stage (``None`` without Train/Test)."""
    if root is None or not root.is_dir():
        raise CorpusNotFoundError(
            f"folder-per-class corpus not found at {root}; pass --data.root PATH. Expected "
            f"layout: {LAYOUT}"
        )
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    staged = [p for p in subdirs if p.name.lower() in STAGE_FOLDERS]
    if staged:
        return {c: STAGE_FOLDERS[s.name.lower()] for s in staged for c in sorted(s.iterdir())
                if c.is_dir() and not c.name.startswith(".")}  # fmt: skip
    return dict.fromkeys(subdirs)


def folder_emotion(folder: Path) -> str:
    """The canonical emotion a class folder's name says; a clear error for a foreign name."""
    try:
        return canonical(folder.name)
    except SERError:
        raise SERError(
            f"class folder {folder} is not an emotion ser knows; rename it to one of "
            f"{', '.join(EMOTIONS)} (or a usual alias: anger, happiness, fear, ...)"
        ) from None


class FolderCorpus(SERDataModule):
    """A folder per class (seed S4's ``EmotionSpeech/Train/<emotion>/*.wav`` layout).

    Classes are the class folders' emotions in alphabetical order. With ``Train``/``Test`` (and
    optionally ``Val``) folders above the class folders, ``split: predefined`` uses them.

    Args:
        root: the corpus folder.
        split: ``None``: ``predefined`` when there are Train/Test folders, else ``random``.
            The speaker-independent splits need ``speaker_pattern``.
        speaker_pattern: a regular expression whose first group finds the speaker in a file
            name (e.g. ``-(\\d\\d)$`` for RAVDESS-style names); ``None``: speakers unknown.
        All other arguments are those of :class:`SERDataModule`.
    """

    SOURCE = "your own recordings"
    LAYOUT = LAYOUT

    def __init__(
        self,
        root: str | None,
        split: SplitSpec | None = None,
        speaker_pattern: str | None = None,
        **kwargs,
    ) -> None:
        folders = class_folders(Path(root).expanduser() if root is not None else None)
        self._folders = {f: (folder_emotion(f), stage) for f, stage in folders.items()}
        self.EMOTIONS = tuple(sorted({e for e, _ in self._folders.values()}))
        if not self.EMOTIONS:
            raise CorpusNotFoundError(f"no class folders under {root}. Expected layout: {LAYOUT}")
        staged = any(stage is not None for _, stage in self._folders.values())
        resolved = split if split is not None else SplitSpec("predefined" if staged else "random")
        try:
            self._speaker = re.compile(speaker_pattern) if speaker_pattern else None
        except re.error as err:
            raise SERError(
                f"speaker_pattern {speaker_pattern!r} is not a regular expression: {err}"
            ) from None
        super().__init__(root=root, split=resolved, **kwargs)

    def speaker_of(self, path: Path) -> str:
        if self._speaker is None:
            return "unknown"
        m = self._speaker.search(path.stem)
        if m is None:
            raise SERError(f"speaker_pattern {self._speaker.pattern!r} finds no speaker in {path}")
        return m.group(1) if m.groups() else m.group(0)

    def scan(self, root: Path) -> list[Clip]:
        return [
            Clip(path=p, emotion=emotion, speaker=self.speaker_of(p), stage=stage)
            for folder, (emotion, stage) in self._folders.items()
            for p in audio_files(sorted(folder.rglob("*")), folder)
        ]
