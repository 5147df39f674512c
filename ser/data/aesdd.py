"""AESDD: the Acted Emotional Speech Dynamic Database (Greek)."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.verify import Official

# xAA (B): emotion letter, utterance number, speaker number in brackets, e.g. "a01 (1).wav".
# Copies vary: a take suffix after the number ("a01b (1)") or after the bracket ("a13 (5)b"), no
# space before the bracket ("h03(2)"), the speaker zero-padded ("d03 (01)") or a capital letter.
NAME = re.compile(r"^([adfhs])(\d+)[a-z]?\s*\(\s*(\d+)\s*\)", re.IGNORECASE)
EMOTION_CODES = {"h": "happy", "s": "sad", "a": "angry", "f": "fearful", "d": "disgust"}


def parse_name(path: Path) -> Clip | None:
    """The clip an AESDD file name (``a01 (1).wav``) describes; ``None`` for other files. The
    speaker is the bracket's number without leading zeros: ``(01)`` and ``(1)`` are one speaker."""
    m = NAME.match(path.stem)
    if m is None:
        return None
    return Clip(path=path, emotion=EMOTION_CODES[m[1].lower()], speaker=str(int(m[3])))


class AESDD(SERDataModule):
    """AESDD: Greek acted speech, 5 emotions (anger, disgust, fear, happiness, sadness).

    Folder per emotion, files ``<emotion letter><utterance> (<speaker>).wav``, e.g.
    ``anger/a01 (1).wav`` (utterance 1 by speaker 1). Version 1 had 5 actors; the database grows
    ("dynamic"), so copies differ: seed S0's copy had 605 files, one of them empty (skipped with a
    warning). All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(EMOTION_CODES.values())
    SOURCE = "https://m3c.web.auth.gr/research/aesdd-speech-emotion-recognition/ (on request)"
    SPEECH = "acted Greek speech by 5 speakers"
    LAYOUT = "ROOT/<anger|disgust|fear|happiness|sadness>/<a|d|f|h|s><nn> (<speaker>).wav"
    OFFICIAL = Official(
        clips=605,
        note="the count of seed S0's copy; AESDD grows, so other copies may differ",
    )

    def scan(self, root: Path) -> list[Clip]:
        return self.scan_files(root, parse_name)
