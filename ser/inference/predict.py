"""``ser predict MODEL PATH...``: the emotion of each recording, from a checkpoint, an export or a
model folder.

A recording is read in blocks, resampled and prepared as the model's pipeline prepares it in
training, cut into windows (:class:`ser.audio.Windower`, as :func:`ser.audio.recording_windows`),
and its result is the mean of the windows' class probabilities; ``ser test --score recordings``
scores a test split the same way. With ``--segments vad`` only the speech segments a
voice-activity detector finds are cut into windows, so silence is skipped.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ser.audio import (
    HOP_SECONDS,
    MIN_SECONDS,
    SILENT,
    WINDOW_SECONDS,
    AudioStream,
    Windower,
    audio_files,
)
from ser.errors import AudioError, SERError
from ser.inference.grouping import GROUPINGS, predict_grouped
from ser.inference.models import (
    EmotionModel,
    Ensemble,
    ExportedModel,
    add_encoder_weights,
    has_ood,
    load_models,
    shortest_clip,
)
from ser.inference.ood import UNLIKE
from ser.inference.plot import check_plot_path, plot_predictions
from ser.inference.vad import load_vad, speech_segments
from ser.io import ensure_writable, refuse_to_replace, write_text

log = logging.getLogger("ser")
GLOB_CHARS = frozenset("*?[")


@dataclass
class Prediction:
    """One recording's result: per window, and for the whole (mean of the window probabilities)."""

    path: Path
    duration: float  #: seconds of audio
    starts: list[float] = field(default_factory=list)  #: window start times (s)
    ends: list[float] = field(default_factory=list)  #: window end times (s)
    window_probabilities: torch.Tensor | None = None  # (n_windows, n_classes)
    #: each window's OOD score over the model's threshold (above 1: unlike the training data;
    #: :mod:`ser.inference.ood`); ``None``: the model holds no OOD statistics
    window_ood: torch.Tensor | None = None  # (n_windows,)
    #: speech segments (start, end) in s found by the voice-activity detector; empty: not used
    segments: list[tuple[float, float]] = field(default_factory=list)

    @property
    def probabilities(self) -> torch.Tensor:
        return self.window_probabilities.mean(dim=0)  # (n_classes,)

    @property
    def ood_score(self) -> float | None:
        """The recording's OOD score over the threshold: the mean of its windows'."""
        return None if self.window_ood is None else float(self.window_ood.mean())


SEGMENTS = ("windows", "vad")


def segment_windows(
    blocks: Iterable[torch.Tensor],
    bounds: list[tuple[int, float]],
    sample_rate: int,
    window_seconds: float,
    hop_seconds: float,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The windows ``(start, end, clip)`` of each segment of a recording given in blocks.

    Args:
        blocks: the recording's consecutive ``(n,)`` blocks at ``sample_rate``.
        bounds: sorted, disjoint sample ranges ``[start, end)`` to cut into windows
            (``[(0, inf)]``: the whole recording); each is cut as a recording of its own.
    """
    windowers = [
        (s, e, Windower(sample_rate, window_seconds, hop_seconds, offset=s)) for s, e in bounds
    ]
    position, first = 0, 0  # first: the first segment not finished
    for block in blocks:
        end = position + len(block)
        for i in range(first, len(windowers)):
            s, e, windower = windowers[i]
            if s >= end:
                break
            piece = block[max(s, position) - position : int(min(e, end)) - position]
            if len(piece):
                yield from windower.push(piece)
            if e <= end:
                yield from windower.finish()
                first = i + 1
        position = end
    for s, _, windower in windowers[first:]:  # cut off by the recording's end
        if s < position:
            yield from windower.finish()


def _recording(
    path: Path, model: nn.Module, window_seconds: float, hop_seconds: float, segments: str
) -> tuple[Prediction, AudioStream, Iterator[tuple[int, int, torch.Tensor]]]:
    """A recording's :class:`Prediction` (to fill), its stream and its windows, read in blocks
    and prepared as the model's pipeline prepares it in training."""
    sample_rate = model.sample_rate
    stream = AudioStream(path, sample_rate)
    if stream.rate < sample_rate:
        log.warning(
            "%s: %d Hz audio upsampled to the model's %d Hz; it holds nothing above %d Hz, "
            "so expect lower accuracy than on full-band audio", path, stream.rate, sample_rate,
            stream.rate // 2,
        )  # fmt: skip
    blocks: Iterable[torch.Tensor] = stream
    if model.decode_denoise is not None:  # noise reduction sees the whole recording, as in training
        blocks = [model.recording(torch.cat(list(stream)))]
    prediction = Prediction(Path(path), duration=0.0)
    bounds: list[tuple[int, float]] = [(0, math.inf)]
    if segments == "vad":
        prediction.segments = speech_segments(path)
        bounds = [(round(s * sample_rate), round(e * sample_rate)) for s, e in prediction.segments]
    return (
        prediction,
        stream,
        segment_windows(blocks, bounds, sample_rate, window_seconds, hop_seconds),
    )


def clip_probabilities(
    model: nn.Module, clips: list[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Probabilities of ``clips`` (any lengths): ``(N, n_classes)``."""
    return clip_outputs(model, clips, device)[0]


@torch.inference_mode()
def clip_outputs(
    model: nn.Module, clips: list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities ``(N, n_classes)`` of ``clips`` (any lengths) and, when the model holds OOD
    statistics (:mod:`ser.inference.ood`), their OOD scores ``(N,)``; else ``None``.

    Clips run in groups of equal length, never padded: the nets' convolutions see a little past
    the valid frames, so padding would make a file's result depend on the files batched with it.
    """
    probabilities, ood = torch.empty(len(clips), 0), torch.full((len(clips),), torch.nan)
    scoring = has_ood(model)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(i)
    for rows in by_length.values():
        batch = torch.stack([clips[i] for i in rows]).to(device)  # (n, T)
        logits, scores = model.scored(batch) if scoring else (model(batch), None)
        group = logits.float().softmax(dim=-1).cpu()  # (n, n_classes)
        if probabilities.shape[1] == 0:
            probabilities = torch.empty(len(clips), group.shape[1])
        probabilities[rows] = group
        if scores is not None:
            ood[rows] = scores.float().cpu()
    return probabilities, ood if scoring else None


def predict_files(
    model: EmotionModel | ExportedModel | Ensemble,
    paths: Iterable[str | Path],
    window_seconds: float = WINDOW_SECONDS,
    hop_seconds: float = HOP_SECONDS,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    segments: str = "windows",
    skipped: dict[Path, str] | None = None,
) -> list[Prediction]:
    """Predict the emotion of each recording, window by window.

    Files are read in blocks (:class:`ser.audio.AudioStream`), so memory does not grow with
    their duration. Windows of every file are batched together, those of equal length in one
    forward pass (the windows of long recordings all have the window's length).
    Unreadable and silent files are skipped with a warning naming them.

    Args:
        model: from :func:`load_model`.
        paths: audio files in any format soundfile reads, at any rate, mono or not.
        window_seconds: window length (s); shorter recordings (or segments) are a single window.
        hop_seconds: step between windows (s).
        batch_size: windows per forward pass.
        device: ``cpu`` or ``cuda``.
        segments: ``windows``: the whole recording is cut into windows; ``vad``: only the speech
            segments a voice-activity detector finds (silero-vad), each cut into windows.
        skipped: filled with ``{path: why}`` for each file skipped (a server answers with it).

    Returns:
        One :class:`Prediction` per readable file, in the order given.
    """
    if not (0 < window_seconds < math.inf and 0 < hop_seconds < math.inf and batch_size >= 1):
        raise SERError(
            f"window ({window_seconds}), hop ({hop_seconds}) and batch size ({batch_size}) must be "
            "positive (finite) numbers"
        )
    if segments not in SEGMENTS:
        raise SERError(f"segments {segments!r}: use one of {', '.join(SEGMENTS)}")
    if segments == "vad":
        load_vad()  # a missing package is one clear error before any file is read
    shortest = shortest_clip(model, window_seconds, "--window")
    if hop_seconds > window_seconds:
        log.warning("hop (%g s) longer than the window (%g s): the audio between windows is not "
                    "scored", hop_seconds, window_seconds)  # fmt: skip
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SERError("--device cuda: no CUDA device is available; use --device cpu")
    model = model.to(device).eval()
    sample_rate = model.sample_rate

    predictions: list[Prediction] = []
    pending: list[tuple[int, int, torch.Tensor]] = []  # (prediction index, window index, clip)
    results: dict[tuple[int, int], torch.Tensor] = {}
    scores: dict[tuple[int, int], float] = {}  # OOD scores, when the model gives them

    def flush() -> None:
        probabilities, ood = clip_outputs(model, [clip for *_, clip in pending], device)
        results.update(
            {(p, w): probs for (p, w, _), probs in zip(pending, probabilities, strict=True)}
        )
        if ood is not None:
            scores.update({(p, w): float(s) for (p, w, _), s in zip(pending, ood, strict=True)})
        pending.clear()

    def skip(path: str | Path, why: str) -> None:
        log.warning("skipping %s", why)
        if skipped is not None:
            skipped[Path(path)] = why

    def discard(index: int) -> None:
        pending[:] = [item for item in pending if item[0] != index]
        for key in [k for k in results if k[0] == index]:
            del results[key]
            scores.pop(key, None)

    for path in paths:
        index = len(predictions)
        try:
            prediction, stream, windows = _recording(
                path, model, window_seconds, hop_seconds, segments
            )
            if max(stream.seconds, MIN_SECONDS) < shortest:
                skip(path, f"{path}: {stream.seconds:.3g} s of audio, the model needs at least "
                           f"{shortest:.3g} s")  # fmt: skip
                continue
            for w, (start, end, clip) in enumerate(windows):
                prediction.starts.append(start / sample_rate)
                prediction.ends.append(end / sample_rate)
                pending.append((index, w, clip))
                if len(pending) == batch_size:
                    flush()
        except AudioError as err:
            skip(path, str(err))
            discard(index)
            continue
        duration = stream.n_samples / sample_rate
        if stream.silent:
            skip(path, f"{path}: {SILENT}, no speech to classify")
        elif not prediction.starts:
            skip(path, f"{path}: the voice-activity detector found no speech")
        else:
            if duration < MIN_SECONDS:
                log.warning("%s: only %.3g s of audio, padded with silence to %g s: too little to "
                            "judge an emotion reliably", path, duration, MIN_SECONDS)  # fmt: skip
            prediction.duration = duration
            prediction.ends = [min(e, prediction.duration) for e in prediction.ends]
            predictions.append(prediction)
            continue
        discard(index)
    if pending:
        flush()
    for index, prediction in enumerate(predictions):
        keys = [(index, w) for w in range(len(prediction.starts))]
        prediction.window_probabilities = torch.stack([results.pop(k) for k in keys])
        if scores:
            prediction.window_ood = torch.tensor([scores.pop(k) for k in keys])
    return predictions


def expand_paths(specs: list[str]) -> list[Path]:
    """Files as given, folders searched recursively for audio files, globs expanded; no repeats."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = audio_files(sorted(path.rglob("*")), path)
            if not found:
                log.warning("no audio files in folder %s", path)
            paths += found
        elif GLOB_CHARS & set(spec) and not path.exists():
            found = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
            )
            if not found:
                log.warning("no files match %s", spec)
            paths += found
        else:
            paths.append(path)  # a missing file is reported (and skipped) when it is read
    return list(dict.fromkeys(paths))


#: The answer below ``--min-confidence``.
UNCERTAIN = "uncertain"


def rows(
    predictions: list[Prediction],
    class_names: list[str],
    per_window: bool,
    min_confidence: float = 0.0,
) -> list[dict]:
    """One row per recording (``window`` = ``all``), then one per window if ``per_window``.

    Args:
        min_confidence: a row whose top class is less probable answers :data:`UNCERTAIN`.

    A row's ``ood_score`` is its OOD score over the model's threshold and ``unlike_training_data``
    whether it is above 1 (both ``None`` for a model without OOD statistics).
    """
    out = []
    for p in predictions:
        n = len(p.starts)
        ood = p.window_ood.tolist() if p.window_ood is not None else [None] * n
        parts = [("all", 0.0, p.duration, p.probabilities, p.ood_score)]
        if per_window:
            parts += list(zip(range(n), p.starts, p.ends, p.window_probabilities, ood, strict=True))
        for window, start, end, probs, score in parts:
            best = int(probs.argmax())
            confidence = float(probs[best])
            out.append({
                "file": str(p.path), "window": window, "start": round(start, 3), "end": round(end, 3),
                "emotion": class_names[best] if confidence >= min_confidence else UNCERTAIN,
                "confidence": confidence,
                "ood_score": None if score is None else round(score, 4),
                "unlike_training_data": None if score is None else score > 1,
                "probabilities": dict(zip(class_names, probs.tolist(), strict=True)),
            })  # fmt: skip
    return out


def format_table(table: list[dict], class_names: list[str], k: int) -> str:
    """A plain-text table: file (and window), emotion, confidence, top-k."""
    lines = []
    for row in table:
        name = (
            row["file"] if row["window"] == "all" else f"  [{row['start']:.2f}-{row['end']:.2f} s]"
        )
        ranked = sorted(row["probabilities"].items(), key=lambda item: -item[1])[:k]
        lines.append(
            (
                name,
                row["emotion"],
                f"{row['confidence']:.3f}",
                ", ".join(f"{c} {v:.2f}" for c, v in ranked),
            )
        )
    header = ("file", "emotion", "confidence", f"top-{k}")
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(3)]
    w0, w1, w2 = widths
    notes = [""] + [f"  <- {UNLIKE} (OOD score {r['ood_score']:.2f})" if r["unlike_training_data"]
                    else "" for r in table]  # fmt: skip
    return "\n".join(
        f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}  {d}{note}"
        for (a, b, c, d), note in zip([header, *lines], notes, strict=True)
    )


def write_output(path: Path, table: list[dict], class_names: list[str]) -> None:
    """``.json``: the rows as a list; ``.csv``: one probability column per class."""
    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(table, indent=2) + "\n")
        return
    if path.suffix.lower() != ".csv":
        raise SERError(f"--output {path}: use a .csv or .json file name")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "window", "start", "end", "emotion", "confidence", *class_names,
                     "ood_score", "unlike_training_data"])  # fmt: skip
    for row in table:
        unlike = row["unlike_training_data"]
        writer.writerow([row["file"], row["window"], row["start"], row["end"], row["emotion"],
                         f"{row['confidence']:.6f}", *(f"{row['probabilities'][c]:.6f}" for c in class_names),
                         "" if row["ood_score"] is None else f"{row['ood_score']:.4f}",
                         "" if unlike is None else str(unlike).lower()])  # fmt: skip
    write_text(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser predict",
        description="Predict the emotion of audio files (any format, rate and channel count).",
    )
    parser.add_argument(
        "model",
        help="a checkpoint from `ser fit`, a model.ts from `ser export`, or a model folder from "
        "`ser export --format hub`",
    )
    parser.add_argument(
        "paths", nargs="+", help="audio files, folders (searched recursively) or globs"
    )
    parser.add_argument(
        "--ensemble", action="append", default=[], metavar="MODEL",
        help="average the class probabilities with this model too (repeat for more); every model "
        "must have the same classes, sample rate and noise reduction",
    )  # fmt: skip
    for name, default, what in (
        ("window", WINDOW_SECONDS, "window length"),
        ("hop", HOP_SECONDS, "step between windows"),
    ):
        parser.add_argument(
            f"--{name}",
            type=float,
            default=default,
            help=f"{what} in seconds (default {default:g})",
        )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="windows per forward pass (default 16)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per row (default 3)")
    parser.add_argument("--per-window", action="store_true", help="also list every window")
    parser.add_argument(
        "--min-confidence", type=float, default=0.0, metavar="P",
        help=f"answer {UNCERTAIN!r} where the top class's (calibrated) probability is below P "
        "(0-1; default 0: always answer); see docs/trust.md for the accuracy at each coverage",
    )  # fmt: skip
    parser.add_argument(
        "--segments", choices=SEGMENTS, default="windows",
        help="windows: cut the whole recording into windows (default); vad: only the speech "
        "segments a voice-activity detector finds, silence skipped (pip install silero-vad)",
    )  # fmt: skip
    parser.add_argument(
        "--group-by", choices=GROUPINGS, default="none",
        help="folder: take each folder's files as one speaker's, normalised by their statistics "
        "(models trained with --data.normalization speaker); none: each recording on its own",
    )  # fmt: skip
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="also draw each recording's class probabilities over time (segments marked)",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, help="also write the results to FILE.csv or FILE.json"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output or --plot file"
    )
    add_encoder_weights(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".json"):
        raise SERError(f"--output {args.output}: use a .csv or .json file name")
    if args.output is not None:
        ensure_writable(args.output.parent, f"--output {args.output}")
    if args.plot is not None:
        check_plot_path(args.plot)
    for option, path in (("--output", args.output), ("--plot", args.plot)):
        if path is not None:
            refuse_to_replace([path], args.overwrite, f"{option} {path}")
    if not 0 <= args.min_confidence <= 1:
        raise SERError(f"--min-confidence {args.min_confidence}: give a probability from 0 to 1")
    model = load_models([args.model, *args.ensemble], args.encoder_weights)
    paths = expand_paths(args.paths)
    if not paths:
        raise SERError(f"no audio files found in {' '.join(args.paths)}")

    def predict(files: list[Path]) -> list[Prediction]:
        return predict_files(
            model, files, args.window, args.hop, args.batch_size, args.device, args.segments
        )

    predictions = (
        predict(paths) if args.group_by == "none" else predict_grouped(model, paths, predict)
    )
    if not predictions:
        raise SERError(f"none of the {len(paths)} files could be read (see the warnings above)")
    if predictions[0].window_ood is None:
        log.info("%s: no OOD statistics in the model, so recordings are not checked for being %s "
                 "(docs/trust.md: ser test --ckpt_path CKPT --recalibrate true adds them)",
                 args.model, UNLIKE)  # fmt: skip
    table = rows(predictions, model.class_names, args.per_window, args.min_confidence)
    print(format_table(table, model.class_names, max(1, args.top_k)))
    if args.output is not None:
        write_output(args.output, table, model.class_names)
        print(f"wrote {args.output}")
    if args.plot is not None:
        plot_predictions(predictions, model.class_names, args.plot)
        print(f"wrote {args.plot}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run(args)
