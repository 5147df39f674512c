"""RAVDESS: the Ryerson Audio-Visual Database of Emotional Speech and Song (speech part)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ser.audio import is_audio_file
from ser.data.base import Clip, SERDataModule
from ser.data.verify import Official

log = logging.getLogger("ser")

# modality-vocal_channel-emotion-intensity-statement-repetition-actor, e.g. 03-01-05-02-01-01-12
NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
EMOTION_CODES = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip


def parse_name(path: Path) -> Clip | None:
    """The clip a RAVDESS file name describes; ``None`` for song, video or foreign files."""
    m = NAME.match(path.stem)
    if not m or m[2] != "01" or m[1] not in ("01", "03") or m[3] not in EMOTION_CODES:
        return None
    return Clip(path=path, emotion=EMOTION_CODES[m[3]], speaker=m[7])


class RAVDESS(SERDataModule):
    """RAVDESS speech: 24 actors (odd male, even female), 1440 clips, 8 emotions.

    Files ``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (any format soundfile reads); the speaker is the
    actor number ``AA`` ("01".."24"). All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(EMOTION_CODES.values())
    SOURCE = "https://zenodo.org/records/1188976 (Audio_Speech_Actors_01-24.zip, CC BY-NC-SA 4.0)"
    LICENCE = (
        "cc-by-nc-sa-4.0",
        "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0: this model is not for commercial "
        "use, must credit the corpus, and adaptations must be shared under the same licence",
    )
    SPEECH = "acted North-American English speech by 24 professional actors, two fixed sentences"
    LAYOUT = (
        "ROOT/Actor_01 .. Actor_24/03-01-<emotion>-<intensity>-<statement>-<repetition>-<actor>.wav"
    )
    # 24 actors x 60: neutral 2 statements x 2 repetitions, the others also x 2 intensities.
    OFFICIAL = Official(
        clips=1440,
        per_class={e: 96 if e == "neutral" else 192 for e in EMOTION_CODES.values()},
        speakers=tuple(f"{a:02d}" for a in range(1, 25)),
        per_speaker=60,
    )
    ARCHIVE = "ravdess"

    def speaker_gender(self, speaker: str) -> str | None:
        return ("male" if int(speaker) % 2 else "female") if speaker.isdigit() else None

    def scan(self, root: Path) -> list[Clip]:
        clips, foreign = [], 0
        for path in sorted(root.glob("Actor_*/*")):
            clip = parse_name(path) if is_audio_file(path) else None
            if clip is None:
                foreign += path.suffix.lower() not in (".txt", ".md", ".csv")
            else:
                clips.append(clip)
        if foreign:
            log.info(
                "RAVDESS: ignored %d files under %s that are not RAVDESS speech audio",
                foreign,
                root,
            )
        return clips
