"""What the server answers, computed in its inference workers: an uploaded recording through
:func:`ser.inference.predict_files` (``ser predict``'s own path), and live windows through
:func:`ser.inference.clip_probabilities`. Pure functions of the model and the requests, so they
are tested without a server.

A bad request is an answer too (``{"status": 4xx, "error": ...}``), never an exception: a batch of
requests shares forward passes, and one bad file must not fail the others.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser.audio import AUDIO_EXTENSIONS, HOP_SECONDS, MIN_SECONDS, WINDOW_SECONDS
from ser.errors import SERError
from ser.inference.models import shortest_clip
from ser.inference.predict import SEGMENTS, clip_probabilities, predict_files, rows


@dataclass(frozen=True)
class Limits:
    """What one request may hold.

    Args:
        max_bytes: largest upload (bytes); more: 413.
        max_seconds: longest recording (s; also a live session's length); longer: 413.
        timeout: seconds a request may wait for its answer; longer: 504.
        max_queue: requests one HTTP process holds at once; more: 503 with ``Retry-After``.
    """

    max_bytes: int = 50 * 2**20
    max_seconds: float = 600.0
    timeout: float = 60.0
    max_queue: int = 128


class RequestError(Exception):
    """A request the server refuses: its HTTP status and one line saying what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Options:
    """How a recording is scored and answered (``ser predict``'s options of the same names)."""

    window: float = WINDOW_SECONDS
    hop: float = HOP_SECONDS
    per_window: bool = False
    top_k: int = 3
    segments: str = "windows"


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def parse_options(fields: dict[str, str]) -> Options:
    """:class:`Options` from a request's query or form fields (names with ``-`` or ``_``).

    Raises:
        RequestError: (400) an unknown field or a value out of range, named.
    """
    known = {"window", "hop", "per_window", "top_k", "segments", "name"}
    values = {k.replace("-", "_"): v for k, v in fields.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RequestError(400, f"unknown option {unknown[0]!r}; use {', '.join(sorted(known))}")
    out = {}
    for name in ("window", "hop"):
        if name in values:
            try:
                out[name] = float(values[name])
            except ValueError:
                out[name] = math.nan
            if not 0 < out[name] < math.inf:
                raise RequestError(
                    400, f"{name}={values[name]!r}: give a positive number of seconds"
                )
    if "top_k" in values:
        if not values["top_k"].isdigit() or int(values["top_k"]) < 1:
            raise RequestError(400, f"top_k={values['top_k']!r}: give a whole number >= 1")
        out["top_k"] = int(values["top_k"])
    if "per_window" in values:
        flag = values["per_window"].lower()
        if flag not in TRUE + FALSE:
            raise RequestError(400, f"per_window={values['per_window']!r}: give true or false")
        out["per_window"] = flag in TRUE
    if "segments" in values:
        if values["segments"] not in SEGMENTS:
            raise RequestError(400, f"segments={values['segments']!r}: use {' or '.join(SEGMENTS)}")
        out["segments"] = values["segments"]
    return Options(**out)


def client_name(name: str | None) -> str:
    """The name an answer gives an upload: the client's file name without folders or control
    characters (``upload`` when none), so no answer names a path on either machine."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()[:120]
    return base or "upload"


def upload(data: bytes, name: str | None, options: Options) -> dict:
    """The payload of a recording sent to the workers."""
    return {"kind": "file", "audio": bytes(data), "name": client_name(name), **asdict(options)}


def error(status: int, message: str) -> dict:
    return {"status": status, "error": message}


def answer_files(
    model: torch.nn.Module, payloads: list[dict], limits: Limits, device: str = "cpu",
    batch_size: int = 16,
) -> list[dict]:  # fmt: skip
    """Answer uploads (:func:`upload`): each its ``ser predict`` result as JSON, or an error.

    Uploads with the same window, hop and segments go through one :func:`predict_files` call,
    so their windows share forward passes, as the files of one ``ser predict`` run do.
    """
    answers: list[dict | None] = [None] * len(payloads)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(payloads):
        groups.setdefault((p["window"], p["hop"], p["segments"]), []).append(i)
    with tempfile.TemporaryDirectory(prefix="ser-serve-") as folder:
        for (window, hop, segments), members in groups.items():
            paths: dict[Path, int] = {}
            for i in members:
                path, refusal = _stage(payloads[i], Path(folder) / str(i), limits)
                if refusal is not None:
                    answers[i] = refusal
                else:
                    paths[path] = i
            if not paths:
                continue
            skipped: dict[Path, str] = {}
            try:
                predictions = predict_files(
                    model, list(paths), window, hop, batch_size, device, segments, skipped
                )
            except SERError as err:  # the options do not suit this model (a window too short...)
                for i in paths.values():
                    answers[i] = error(400, _hide(str(err), folder))
                continue
            for prediction in predictions:
                i = paths[prediction.path]
                answers[i] = _result(prediction, model.class_names, payloads[i])
            for path, why in skipped.items():
                name = payloads[paths[path]]["name"]
                answers[paths[path]] = error(422, _hide(why.replace(str(path), name), folder))
    return [a if a is not None else error(422, "no answer for this recording") for a in answers]


def _stage(payload: dict, stem: Path, limits: Limits) -> tuple[Path, dict | None]:
    """Write an upload where :func:`predict_files` reads it; refuse it first if it is empty, too
    long or too short (as its header says: nothing is decoded for that)."""
    name, data = payload["name"], payload["audio"]
    if not data:
        return stem, error(400, f"{name}: no audio in the request (0 bytes)")
    if len(data) > limits.max_bytes:
        return stem, error(413, f"{name}: {len(data)} bytes; this server takes at most "
                                f"{limits.max_bytes} bytes a recording")  # fmt: skip
    suffix = Path(name).suffix.lower()
    path = stem.with_suffix(suffix if suffix in AUDIO_EXTENSIONS else "")
    path.write_bytes(data)
    try:
        info = sf.info(str(path))
    except Exception:  # undecodable: predict_files says so, in ser predict's words
        return path, None
    if info.duration > limits.max_seconds:
        return path, error(413, f"{name}: {info.duration:.1f} s of audio; this server takes at "
                                f"most {limits.max_seconds:g} s a recording")  # fmt: skip
    if 0 < info.duration < MIN_SECONDS:
        return path, error(422, f"{name}: {info.duration:.3g} s of audio, too short to judge an "
                                f"emotion; send at least {MIN_SECONDS:g} s")  # fmt: skip
    return path, None


def _hide(message: str, folder: str) -> str:
    """A message with the server's temporary folder taken out."""
    return message.replace(folder + "/", "").replace(folder, "")


def _result(prediction, class_names: list[str], payload: dict) -> dict:
    """One recording's answer: ``ser predict``'s rows (:func:`rows`) as one JSON object."""
    prediction.path = Path(payload["name"])
    whole, *windows = rows([prediction], class_names, payload["per_window"])
    ranked = sorted(whole["probabilities"].items(), key=lambda item: -item[1])
    body = {
        "file": payload["name"], "duration": round(prediction.duration, 3),
        "emotion": whole["emotion"], "confidence": whole["confidence"],
        "probabilities": whole["probabilities"], "ood_score": whole["ood_score"],
        "unlike_training_data": whole["unlike_training_data"],
        "top_k": [{"emotion": c, "probability": p} for c, p in ranked[: payload["top_k"]]],
        "classes": list(class_names), "window": payload["window"], "hop": payload["hop"],
    }  # fmt: skip
    if payload["per_window"]:
        body["windows"] = [
            {
                k: w[k]
                for k in (
                    "start",
                    "end",
                    "emotion",
                    "confidence",
                    "probabilities",
                    "ood_score",
                    "unlike_training_data",
                )
            }  # fmt: skip
            for w in windows
        ]
    if payload["segments"] == "vad":
        body["segments"] = [[round(s, 3), round(e, 3)] for s, e in prediction.segments]
    return {"status": 200, "body": body}


def clips_payload(clips: list[np.ndarray]) -> dict:
    """The payload of live windows ``(n,)`` at the model's rate sent to the workers."""
    return {"kind": "clips", "clips": [np.ascontiguousarray(c, dtype=np.float32) for c in clips]}


def answer_clips(model: torch.nn.Module, payloads: list[dict], device: str = "cpu") -> list[dict]:
    """Answer live windows (:func:`clips_payload`): each payload's ``(n_windows, n_classes)``
    probabilities as lists; the windows of every payload share forward passes."""
    out: list[dict | None] = [None] * len(payloads)
    for i, p in enumerate(payloads):  # a window too short for the net: that payload's error only
        try:
            for clip in p["clips"]:
                shortest_clip(model, len(clip) / model.sample_rate, "window")
        except SERError as err:
            out[i] = error(400, str(err))
    valid = [i for i, a in enumerate(out) if a is None]
    clips = [torch.from_numpy(c) for i in valid for c in payloads[i]["clips"]]
    probabilities = clip_probabilities(model, clips, torch.device(device)).tolist() if clips else []
    start = 0
    for i in valid:
        n = len(payloads[i]["clips"])
        out[i] = {"status": 200, "probabilities": probabilities[start : start + n]}
        start += n
    return out


def answer(model: torch.nn.Module, payloads: list[dict], limits: Limits, device: str = "cpu",
           batch_size: int = 16) -> list[dict]:  # fmt: skip
    """Answer a batch of payloads of both kinds, in order."""
    out: list[dict | None] = [None] * len(payloads)
    for kind, run in (
        ("file", lambda ps: answer_files(model, ps, limits, device, batch_size)),
        ("clips", lambda ps: answer_clips(model, ps, device)),
    ):
        index = [i for i, p in enumerate(payloads) if p.get("kind") == kind]
        for i, a in zip(index, run([payloads[i] for i in index]) if index else [], strict=True):
            out[i] = a
    return [a if a is not None else error(400, "unknown request kind") for a in out]
