"""One emotion vocabulary for every corpus, so models trained on one corpus test on another."""

from __future__ import annotations

from ser.errors import SERError

#: The canonical emotion names: RAVDESS's eight in its order, then EmoDB's boredom.
EMOTIONS = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "bored",
)  # fmt: skip

# Names and abbreviations that corpora and users write, lower-cased. Corpus-specific one-letter
# codes (EmoDB's W/L/E/A/F/T/N, SAVEE's a/d/f/h/n/sa/su, AESDD's a/d/f/h/s) clash between corpora
# (``a`` is fear in EmoDB, anger in SAVEE), so they live in the corpus modules, not here.

_ALIASES = {
    "neutral": "neutral",
    "neu": "neutral",
    "calm": "calm",
    "happy": "happy",
    "happiness": "happy",
    "joyful": "happy",
    "hap": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "mad": "angry",
    "ang": "angry",
    "afraid": "fearful",
    "fearful": "fearful",
    "fear": "fearful",
    "fea": "fearful",
    "disgust": "disgust",
    "dis": "disgust",
    "disgusted": "disgust",
    "surprised": "surprised",
    "surprise": "surprised",
    "sur": "surprised",
    "ps": "surprised",  # TESS: pleasant surprise
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "bored": "bored",
    "boredom": "bored",
    "bor": "bored",
    # German (EmoDB's emotion names)
    "wut": "angry",
    "ärger": "angry",
    "langeweile": "bored",
    "ekel": "disgust",
    "angst": "fearful",
    "freude": "happy",
    "trauer": "sad",
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
        if len(emotions) < 2:  # else a net of 0 or 1 outputs fails with its own words
            raise SERError(
                f"--data.emotions {list(emotions)}: give two or more emotions to tell apart, or "
                "leave it out for every emotion of the corpus"
            )
    kept = {e: c for e, c in mapping.items() if c in classes}
    return classes, kept


def restrict_to_classes(
    mapping: dict[str, str], own_classes: list[str], target: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Re-express a corpus's labels in another label space (a trained model's), on shared classes.

    Args:
        mapping: each corpus emotion -> its class (from :func:`resolve_classes`).
        own_classes: the corpus's classes.
        target: the label space to use, e.g. a checkpoint's class names.

    Returns:
        The mapping restricted to emotions whose class is in ``target``, and the shared classes
        in ``target``'s order.

    Raises:
        SERError: no class is shared.
    """
    shared = [c for c in target if c in own_classes]
    if not shared:
        raise SERError(
            f"the model's classes {list(target)} and this corpus's classes {own_classes} have "
            "no class in common, so the model cannot be evaluated on it; pick a corpus that "
            "shares at least one emotion (names are compared after mapping to the canonical "
            f"vocabulary: {', '.join(EMOTIONS)})"
        )
    return {e: c for e, c in mapping.items() if c in shared}, shared
