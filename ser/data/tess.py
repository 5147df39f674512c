"""TESS: the Toronto Emotional Speech Set."""

from __future__ import annotations

from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.emotions import canonical
from ser.data.verify import Official
from ser.errors import SERError

#: Speaker prefixes as they occur in the released file names (a few files say ``OA_``/``YA_``).
SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF", "YA": "YAF"}
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def parse_name(path: Path) -> Clip | None:
    """The clip a TESS file name (``OAF_back_angry.wav``, ``YAF_bath_ps.wav``) describes."""
    parts = path.stem.split("_")
    if len(parts) < 3 or parts[0].upper() not in SPEAKERS:
        return None
    try:
        emotion = canonical("_".join(parts[2:]))
    except SERError:
        return None
    if emotion not in EMOTIONS:
        return None
    return Clip(path=path, emotion=emotion, speaker=SPEAKERS[parts[0].upper()])


class TESS(SERDataModule):
    """TESS: 2800 clips, 2 speakers (OAF aged 64, YAF aged 26) x 7 emotions x 200 words.

    Files ``<speaker>_<emotion>/<speaker>_<word>_<emotion>.wav`` (e.g. ``OAF_angry/OAF_back_angry.wav``,
    ``ps`` = pleasant surprise -> ``surprised``). With two speakers, the speaker-independent split
    of ``configs/data/tess.yaml`` trains on one voice and tests on the other (``test_speakers:
    [YAF]``, ``val_speakers: []``: validation is a ``val_ratio`` share of the training voice).
    All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = EMOTIONS
    SOURCE = "https://doi.org/10.5683/SP2/E8H2MF (University of Toronto Dataverse, CC BY-NC-ND 4.0)"
    LICENCE = (
        "cc-by-nc-nd-4.0",
        "TESS (University of Toronto), CC BY-NC-ND 4.0: this model is not for commercial use",
    )
    SPEECH = (
        "acted Canadian English speech by two female speakers, single words in a carrier phrase"
    )
    LAYOUT = (
        "ROOT/<OAF|YAF>_<emotion>/<OAF|YAF>_<word>_<angry|disgust|fear|happy|neutral|ps|sad>.wav"
    )
    OFFICIAL = Official(
        clips=2800,
        per_class=dict.fromkeys(EMOTIONS, 400),
        speakers=("OAF", "YAF"),
        per_speaker=1400,
    )

    def speaker_gender(self, speaker: str) -> str | None:
        return "female"  # two female speakers

    def scan(self, root: Path) -> list[Clip]:
        return self.scan_files(root, parse_name)
