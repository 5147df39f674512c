"""``ser predict MODEL PATH...``: the emotion of each recording, from a checkpoint or an export."""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import logging
import sys
from pathlib import Path

from ser.audio import is_audio_file
from ser.errors import SERError
from ser.inference import Prediction, load_models, predict_files
from ser.io import ensure_writable, write_text

log = logging.getLogger(__name__)
GLOB_CHARS = frozenset("*?[")


def expand_paths(specs: list[str]) -> list[Path]:
    """Files as given, folders searched recursively for audio files, globs expanded; no repeats."""
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if is_audio_file(p))
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


def rows(predictions: list[Prediction], class_names: list[str], per_window: bool) -> list[dict]:
    """One row per recording (``window`` = ``all``), then one per window if ``per_window``."""
    out = []
    for p in predictions:
        parts = [("all", 0.0, p.duration, p.probabilities)]
        if per_window:
            parts += list(
                zip(range(len(p.starts)), p.starts, p.ends, p.window_probabilities, strict=True)
            )
        for window, start, end, probs in parts:
            best = int(probs.argmax())
            out.append({
                "file": str(p.path), "window": window, "start": round(start, 3), "end": round(end, 3),
                "emotion": class_names[best], "confidence": float(probs[best]),
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
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}  {d}" for a, b, c, d in [header, *lines])


def write_output(path: Path, table: list[dict], class_names: list[str]) -> None:
    """``.json``: the rows as a list; ``.csv``: one probability column per class."""
    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(table, indent=2) + "\n")
        return
    if path.suffix.lower() != ".csv":
        raise SERError(f"--output {path}: use a .csv or .json file name")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "window", "start", "end", "emotion", "confidence", *class_names])
    for row in table:
        writer.writerow([row["file"], row["window"], row["start"], row["end"], row["emotion"],
                         f"{row['confidence']:.6f}", *(f"{row['probabilities'][c]:.6f}" for c in class_names)])  # fmt: skip
    write_text(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser predict",
        description="Predict the emotion of audio files (any format, rate and channel count).",
    )
    parser.add_argument("model", help="a checkpoint from `ser fit` or a model.ts from `ser export`")
    parser.add_argument(
        "paths", nargs="+", help="audio files, folders (searched recursively) or globs"
    )
    parser.add_argument(
        "--ensemble", action="append", default=[], metavar="MODEL",
        help="average the class probabilities with this model too (repeat for more); every model "
        "must have the same classes, sample rate and noise reduction",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=float, default=4.0, help="window length in seconds (default 4)"
    )
    parser.add_argument(
        "--hop", type=float, default=2.0, help="step between windows in seconds (default 2)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="windows per forward pass (default 16)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per row (default 3)")
    parser.add_argument("--per-window", action="store_true", help="also list every window")
    parser.add_argument(
        "--output", type=Path, help="also write the results to FILE.csv or FILE.json"
    )
    return parser


def run(args: argparse.Namespace) -> None:
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".json"):
        raise SERError(f"--output {args.output}: use a .csv or .json file name")
    if args.output is not None:
        ensure_writable(args.output.parent, f"--output {args.output}")
    model = load_models([args.model, *args.ensemble])
    paths = expand_paths(args.paths)
    if not paths:
        raise SERError(f"no audio files found in {' '.join(args.paths)}")
    predictions = predict_files(model, paths, args.window, args.hop, args.batch_size, args.device)
    if not predictions:
        raise SERError(f"none of the {len(paths)} files could be read (see the warnings above)")
    table = rows(predictions, model.class_names, args.per_window)
    print(format_table(table, model.class_names, max(1, args.top_k)))
    if args.output is not None:
        write_output(args.output, table, model.class_names)
        print(f"wrote {args.output}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
        )
    run(args)
