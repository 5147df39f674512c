"""Does the model work equally for every group of speakers? UAR and accuracy per gender (from the
corpus's own metadata, :meth:`ser.data.SERDataModule.speaker_gender`) and per speaker, and the gap
between the best and the worst group.

A group is only listed when the test split holds clips of it: a corpus without gender metadata
has no gender entry, never a 0.0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ser.confusion import metrics_from_confusion


def group_metrics(
    predictions: list[dict], class_names: list[str], group_of: Callable[[dict], str | None]
) -> dict:
    """UAR, accuracy and clip count per group of the test rows (``label``, ``probabilities``),
    and the gaps between the best and the worst group's UAR and accuracy (with two groups or more).

    Args:
        group_of: a row's group; ``None``: the row is in no group (e.g. gender unknown).
    """
    n = len(class_names)
    confusions: dict[str, np.ndarray] = {}
    for row in predictions:
        group = group_of(row)
        if group is not None:
            confusion = confusions.setdefault(group, np.zeros((n, n), dtype=np.int64))
            confusion[row["label"], int(np.argmax(row["probabilities"]))] += 1
    groups = {}
    for name, confusion in sorted(confusions.items()):
        m = metrics_from_confusion(confusion, class_names)
        groups[name] = {"uar": m["uar"], "accuracy": m["accuracy"], "n_clips": m["n_clips"]}
    out: dict = {"groups": groups}
    if len(groups) >= 2:
        for key in ("uar", "accuracy"):
            values = {g: v[key] for g, v in groups.items()}
            out[f"{key}_gap"] = max(values.values()) - min(values.values())
        out["worst_uar"] = min(groups, key=lambda g: groups[g]["uar"])
    return out


def fairness(
    predictions: list[dict], class_names: list[str], genders: dict[str, str] | None = None
) -> dict:
    """``{"gender": ..., "speaker": ...}`` of :func:`group_metrics`; ``gender`` only when some
    test speaker's gender is known.

    Args:
        genders: speaker id -> gender (speakers missing: unknown).
    """
    out = {}
    genders = genders or {}
    if any(row["speaker"] in genders for row in predictions):
        out["gender"] = group_metrics(predictions, class_names, lambda r: genders.get(r["speaker"]))
    out["speaker"] = group_metrics(predictions, class_names, lambda r: r["speaker"])
    return out


def format_fairness(report: dict) -> str:
    """One line per grouping: each group's UAR (clips), then the gap."""
    lines = []
    for grouping, entry in report.items():
        parts = [f"{g} {m['uar']:.3f} ({m['n_clips']})" for g, m in entry["groups"].items()]
        if grouping == "speaker" and len(parts) > 6:  # the extremes; metrics.json holds them all
            ranked = sorted(entry["groups"], key=lambda g: entry["groups"][g]["uar"])
            parts = [f"{g} {entry['groups'][g]['uar']:.3f}" for g in (ranked[0], ranked[-1])]
            parts = [f"{len(ranked)} speakers, lowest {parts[0]}, highest {parts[1]}"]
        gap = (
            f"; gap {entry['uar_gap']:.3f} (UAR), {entry['accuracy_gap']:.3f} (accuracy)"
            if "uar_gap" in entry
            else ""
        )
        lines.append(f"per-{grouping} UAR: {', '.join(parts)}{gap}")
    return "\n".join(lines)


def fairness_scalars(report: dict) -> dict[str, float]:
    """TensorBoard scalars of a :func:`fairness` report: ``test_<grouping>/uar/<group>``,
    ``.../accuracy/<group>`` and the gaps ``test_<grouping>/uar_gap``."""
    scalars = {}
    for grouping, entry in report.items():
        for group, m in entry["groups"].items():
            for key in ("uar", "accuracy"):
                scalars[f"test_{grouping}/{key}/{group}"] = m[key]
        for key in ("uar_gap", "accuracy_gap"):
            if key in entry:
                scalars[f"test_{grouping}/{key}"] = entry[key]
    return scalars
