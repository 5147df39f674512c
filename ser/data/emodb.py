"""EmoDB: the Berlin Database of Emotional Speech."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.verify import Official

# speaker, text, emotion letter (German), version, e.g. 03a01Fa
NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
#: EmoDB's letters: Wut, Langeweile, Ekel, Angst, Freude, Trauer, Neutral.
EMOTION_CODES = {
    "N": "neutral", "F": "happy", "T": "sad", "W": "angry", "A": "fearful", "E": "disgust", "L": "bored",
}  # fmt: skip


def parse_name(path: Path) -> Clip | None:
    """The clip an EmoDB file name (``03a01Fa.wav``) describes; ``None`` for other files."""
    m = NAME.match(path.stem)
    return None if m is None else Clip(path=path, emotion=EMOTION_CODES[m[3]], speaker=m[1])


class EmoDB(SERDataModule):
    """EmoDB: 535 German utterances of 10 actors (03, 08-16), 10 sentences, 7 emotions.

    Files ``wav/<speaker><text><emotion><version>.wav`` (e.g. ``wav/03a01Fa.wav``: speaker 03,
    text a01, emotion F = Freude/happy, version a). All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(EMOTION_CODES.values())
    SOURCE = "http://emodb.bilderbar.info/download/ (download.zip; also zenodo.org/records/7447302)"
    SPEECH = "acted German speech by 10 speakers, 10 sentences"
    LAYOUT = (
        "ROOT/wav/<speaker 2 digits><text a01..b10><W|L|E|A|F|T|N><version>.wav, e.g. 03a01Fa.wav"
    )
    OFFICIAL = Official(
        clips=535,
        per_class={
            "angry": 127,
            "bored": 81,
            "disgust": 46,
            "fearful": 69,
            "happy": 71,
            "sad": 62,
            "neutral": 79,
        },  # fmt: skip
        per_speaker={
            "03": 49,
            "08": 58,
            "09": 43,
            "10": 38,
            "11": 55,
            "12": 35,
            "13": 61,
            "14": 69,
            "15": 56,
            "16": 71,
        },  # fmt: skip
    )
    ARCHIVE = "emodb"
    #: The speaker table of EmoDB's documentation.
    GENDERS = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
               "12": "male", "13": "female", "14": "female", "15": "male", "16": "female"}  # fmt: skip

    def speaker_gender(self, speaker: str) -> str | None:
        return self.GENDERS.get(speaker)

    def scan(self, root: Path) -> list[Clip]:
        return self.scan_files(root, parse_name)
