"""Speakers' genders from a corpus's own metadata, for the per-group figures of the test report
(:mod:`ser.fairness`): the spellings corpora use, and gender columns of CSV tables."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger("ser")

#: Spellings of the two genders the corpora record; any other value is kept as written.
SPELLINGS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female",
             "woman": "female", "w": "female"}  # fmt: skip


def canonical_gender(value: str | None) -> str | None:
    """``male``/``female`` for their usual spellings, another value in lower case, ``None`` for
    an empty one."""
    value = (value or "").strip().lower()
    return SPELLINGS.get(value, value) or None


def read_genders(path: Path, speaker_column: str, gender_column: str) -> dict[str, str]:
    """Speaker id -> gender of a CSV table with a header row (columns matched case-insensitively);
    empty when the file or a column is missing (logged), rows without a gender left out."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {c.strip().lower(): c for c in reader.fieldnames or []}
            if speaker_column.lower() not in columns or gender_column.lower() not in columns:
                log.info("%s: no %s and %s columns, so no per-gender figures", path,
                         speaker_column, gender_column)  # fmt: skip
                return {}
            speaker, gender = columns[speaker_column.lower()], columns[gender_column.lower()]
            genders = {
                (row[speaker] or "").strip(): canonical_gender(row[gender]) for row in reader
            }
    except OSError as err:
        log.info("no per-gender figures: %s unreadable (%s)", path, err)
        return {}
    return {s: g for s, g in genders.items() if s and g}
