"""Checking a corpus on use: counts against the official ones, unusable files, duplicate audio."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Official:
    """A corpus's documented size, to check a copy against.

    Args:
        clips: total number of clips.
        per_class: clips per canonical emotion.
        speakers: the speaker ids.
        per_speaker: clips per speaker (one number for all, or per speaker id).
        note: where the figures come from, or what is uncertain.
    """

    clips: int
    per_class: dict[str, int] = field(default_factory=dict)
    speakers: tuple[str, ...] = ()
    per_speaker: int | dict[str, int] | None = None
    note: str = ""


@dataclass
class CountReport:
    """Found vs official counts; ``text`` is the readable report."""

    ok: bool
    text: str


def _compare(name: str, found: Counter, expected: dict[str, int]) -> list[str]:
    lines = []
    for key in sorted(set(found) | set(expected)):
        have, want = found.get(key, 0), expected.get(key)
        if want is None:
            lines.append(f"  {name} {key}: {have} files, not in the official corpus (extra)")
        elif have != want:
            word = "missing" if have < want else "extra"
            lines.append(
                f"  {name} {key}: {have} files, official {want} ({abs(want - have)} {word})"
            )
    return lines


def speaker_line(speakers: Sequence[str]) -> str:
    """The speakers found with their clip counts, e.g. ``speakers (clips): 1 (120), 2 (118)``."""
    counts = Counter(speakers)
    order = sorted(counts, key=lambda s: (natural(speaker_key(s)), s))
    return "  speakers (clips): " + ", ".join(f"{s} ({counts[s]})" for s in order)


def speaker_key(speaker: str) -> str:
    """What a speaker id comes to when case, separators, leading zeros and a take letter after a
    number are ignored: ``01``, ``1`` and ``1b`` give ``1``; ``Spk_07`` and ``spk7`` give ``spk7``."""
    key = re.sub(r"[\s_\-().]", "", speaker.lower())
    key = re.sub(r"\d+", lambda m: str(int(m[0])), key)
    return re.sub(r"(?<=\d)[a-z]$", "", key)


def natural(text: str) -> list:
    """A sort key that orders the numbers in ``text`` by value: ``2`` before ``15``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def speaker_variants(speakers: Sequence[str]) -> list[list[str]]:
    """Groups of distinct speaker ids that look like one id written differently
    (:func:`speaker_key`): a speaker-independent split would put them in different folds."""
    groups: dict[str, list[str]] = {}
    for speaker in sorted(set(speakers)):
        groups.setdefault(speaker_key(speaker), []).append(speaker)
    return [g for g in groups.values() if len(g) > 1]


def count_report(
    corpus: str, emotions: Sequence[str], speakers: Sequence[str], official: Official
) -> CountReport:
    """Compare the clips found (their emotions and speakers) with the official counts.

    Args:
        corpus: the corpus's name, for the report.
        emotions: canonical emotion of each clip found.
        speakers: speaker of each clip found.
        official: the documented counts.
    """
    by_class, by_speaker = Counter(emotions), Counter(speakers)
    head = (
        f"{corpus}: {len(emotions)} files, {len(by_class)} classes, {len(by_speaker)} speakers found; "
        f"official {official.clips} files"
        + (f", {len(official.per_class)} classes" if official.per_class else "")
        + (f", {len(official.speakers)} speakers" if official.speakers else "")
    )
    problems = []
    if len(emotions) != official.clips:
        diff = official.clips - len(emotions)
        problems.append(f"  total: {len(emotions)} files, official {official.clips} "
                        f"({abs(diff)} {'missing' if diff > 0 else 'extra'})")  # fmt: skip
    if official.per_class:
        problems += _compare("class", by_class, official.per_class)
    if isinstance(official.per_speaker, dict):
        problems += _compare("speaker", by_speaker, official.per_speaker)
    elif official.per_speaker is not None and official.speakers:
        expected = dict.fromkeys(official.speakers, official.per_speaker)
        problems += _compare("speaker", by_speaker, expected)
    elif official.speakers:  # only the speaker set is documented
        problems += [
            f"  speaker {s}: no files (missing)" for s in official.speakers if s not in by_speaker
        ]
        problems += [f"  speaker {s}: {n} files, not an official speaker (extra)"
                     for s, n in sorted(by_speaker.items()) if s not in official.speakers]  # fmt: skip
    note = f" ({official.note})" if official.note else ""
    if not problems:
        return CountReport(True, head + f": all counts match{note}\n" + speaker_line(speakers))
    text = head + f"{note}; differences:\n" + "\n".join(problems) + "\n" + speaker_line(speakers)
    return CountReport(False, text)


def duplicate_groups(paths: Sequence[str], waves: Sequence[torch.Tensor]) -> list[list[str]]:
    """Groups of files whose decoded audio is sample-for-sample identical (hash of the samples)."""
    groups: dict[bytes, list[str]] = {}
    for path, wave in zip(paths, waves, strict=True):
        digest = hashlib.blake2b(wave.contiguous().numpy().tobytes(), digest_size=16).digest()
        groups.setdefault(digest, []).append(str(path))
    return [sorted(g) for g in groups.values() if len(g) > 1]
