"""CREMA-D: the Crowd-sourced Emotional Multimodal Actors Dataset (audio)."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.base import Clip, SERDataModule
from ser.data.gender import read_genders
from ser.data.verify import Official

# actor_sentence_emotion_intensity, e.g. 1001_DFA_ANG_XX
NAME = re.compile(r"^(1\d{3})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
EMOTION_CODES = {
    "NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fearful", "DIS": "disgust",
}  # fmt: skip


def parse_name(path: Path) -> Clip | None:
    """The clip a CREMA-D file name describes; ``None`` for other files."""
    m = NAME.match(path.stem)
    if not m or m[3] not in EMOTION_CODES:
        return None
    return Clip(path=path, emotion=EMOTION_CODES[m[3]], speaker=m[1])


class CREMAD(SERDataModule):
    """CREMA-D: 7442 clips of 91 actors (1001-1091), 12 sentences, 6 emotions.

    Files ``AudioWAV/<actor>_<sentence>_<emotion>_<intensity>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``;
    emotion ANG/DIS/FEA/HAP/NEU/SAD, intensity LO/MD/HI/XX); the speaker is the actor number.
    All arguments are those of :class:`SERDataModule`.
    """

    EMOTIONS = tuple(EMOTION_CODES.values())
    SOURCE = (
        "https://github.com/CheyneyComputerScience/CREMA-D (git lfs; folder AudioWAV, "
        "Open Database License)"
    )
    LICENCE = (
        "odbl",
        "CREMA-D, Open Database License 1.0 (contents: Database Contents License): credit the "
        "corpus and keep the licence's share-alike terms",
    )
    SPEECH = "acted English speech by 91 actors, 12 sentences"
    LAYOUT = "ROOT/AudioWAV/<actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<LO|MD|HI|XX>.wav"
    OFFICIAL = Official(
        clips=7442,
        per_class={
            "neutral": 1087,
            "happy": 1271,
            "sad": 1271,
            "angry": 1271,
            "fearful": 1271,
            "disgust": 1271,
        },  # fmt: skip
        speakers=tuple(str(a) for a in range(1001, 1092)),
        note="clips per actor vary (a few recordings are missing from the release)",
    )

    #: The actors' table released with the corpus (ActorID, Age, Sex, Race, Ethnicity).
    DEMOGRAPHICS = "VideoDemographics.csv"

    def speaker_gender(self, speaker: str) -> str | None:
        if not hasattr(self, "_genders"):
            self._genders = read_genders(self.check_root() / self.DEMOGRAPHICS, "ActorID", "Sex")
        return self._genders.get(speaker)

    def scan(self, root: Path) -> list[Clip]:
        return self.scan_files(root, parse_name)
