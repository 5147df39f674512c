"""One emotion vocabulary for every corpus, so models trained on one corpus test on another."""

from __future__ import annotations

from ser.errors import SERError

#: The canonical emotion names, in RAVDESS order.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

_ALIASES = {
    "neutral": "neutral",
    "neu": "neutral",
    "n": "neutral",
    "calm": "calm",
    "happy": "happy",
    "happiness": "happy",
    "hap": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "ang": "angry",
    "fearful": "fearful",
    "fear": "fearful",
    "fea": "fearful",
    "disgust": "disgust",
    "dis": "disgust",
    "surprised": "surprised",
    "surprise": "surprised",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
}


def canonical(name: str) -> str:
    """Map a corpus's emotion name (``ANG``, ``anger``, ``ps``...) to the canonical vocabulary.

    Raises:
        SERError: the name is not a known emotion.
    """
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in _ALIASES:
        raise SERError(f"unknown emotion label {name!r}; known: {', '.join(EMOTIONS)}")
    return _ALIASES[key]


def resolve_classes(
    corpus_classes: tuple[str, ...],
    emotions: list[str] | None,
    merge: dict[str, str] | None,
) -> tuple[list[str], dict[str, str]]:
    """Work out the class list and the label mapping from a corpus's classes and the user's choice.

    Args:
        corpus_classes: the corpus's emotions, canonical names, in the corpus's order.
        emotions: keep only these classes, in this order (``None``: every class left after merging).
        merge: map an emotion onto another, e.g. ``{"calm": "neutral"}``.

    Returns:
        The class names, and a map from each corpus emotion to its class (emotions dropped are absent).
    """
    merge = {canonical(k): canonical(v) for k, v in (merge or {}).items()}
    mapping = {e: merge.get(e, e) for e in corpus_classes}
    if emotions is None:
        classes = list(dict.fromkeys(mapping.values()))
    else:
        classes = [canonical(e) for e in emotions]
        missing = [c for c in classes if c not in mapping.values()]
        if missing:
            raise SERError(
                f"emotions {missing} are not in this corpus; it has {', '.join(corpus_classes)}"
            )
        if len(set(classes)) != len(classes):
            raise SERError(f"emotions lists a class twice: {emotions}")
    kept = {e: c for e, c in mapping.items() if c in classes}
    return classes, kept
