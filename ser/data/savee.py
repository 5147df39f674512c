"""SAVEE: the Surrey Audio-Visual Expressed Emotion database (audio)."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.verify import Official

SPEAKERS = ("DC", "JE", "JK", "KL")
# Original AudioData/DC/a01.wav, or the common flat DC_a01.wav; some copies lower-case the
# speaker (dc_a01.wav, AudioData/dc/) or capitalise the emotion (DC_Sa01.wav)
NAME = re.compile(r"^(?:(DC|JE|JK|KL)_)?(sa|su|a|d|f|h|n)(\d\d)$", re.IGNORECASE)
EMOTION_CODES = {
    "n": "neutral", "h": "happy", "sa": "sad", "a": "angry", "f": "fearful", "d": "disgust", "su": "surprised",
}  # fmt: skip


def parse_name(path: Path) -> Clip | None:
    """The clip a SAVEE path describes (speaker from the ``DC_`` prefix or the ``DC`` folder)."""
    m = NAME.match(path.stem)
    if m is None:
        return None
    speaker = (m[1] or path.parent.name).upper()
    if speaker not in SPEAKERS:
        return None
    return Clip(path=path, emotion=EMOTION_CODES[m[2].lower()], speaker=speaker)


class SAVEE(SERDataModule):
    """SAVEE: 480 British English utterances of 4 male speakers (DC, JE, JK, KL), 7 emotions.

    Files ``AudioData/<speaker>/<emotion><nn>.wav`` (``a01.wav``; a, d, f, h, n, sa, su) as
    released, or the flat ``<speaker>_<emotion><nn>.wav`` of common re-distributions. Each speaker
    has 15 clips per emotion and 30 neutral. All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(EMOTION_CODES.values())
    SOURCE = "http://kahlan.eps.surrey.ac.uk/savee/ (registration required)"
    SPEECH = "acted British English speech by 4 male speakers"
    LAYOUT = "ROOT/AudioData/<DC|JE|JK|KL>/<a|d|f|h|n|sa|su><nn>.wav, or ROOT/<DC|JE|JK|KL>_<a..su><nn>.wav"
    OFFICIAL = Official(
        clips=480,
        per_class={e: 120 if e == "neutral" else 60 for e in EMOTION_CODES.values()},
        speakers=SPEAKERS,
        per_speaker=120,
    )

    def speaker_gender(self, speaker: str) -> str | None:
        return "male"  # four male speakers

    def scan(self, root: Path) -> list[Clip]:
        return self.scan_files(root, parse_name)
