"""Inference speed of ``ser predict``: real-time factor, cold start, and export parity.

    python benchmarks/predict.py CHECKPOINT --audio FOLDER [--minutes 10]

CHECKPOINT is a ``ser fit`` checkpoint (e.g. ``lightning_logs/cnn2d/version_0/checkpoints/
best-*.ckpt``); FOLDER is a folder of recordings (e.g. the RAVDESS corpus). Prints three tables:

1. real-time factor (wall seconds per audio second) of batched prediction over at least
   ``--minutes`` of audio, decoding included, from the checkpoint and from its TorchScript export;
2. cold start: process start to the first printed prediction, ``ser predict`` on one file;
3. parity of the exports: maximum absolute logit difference against the checkpoint.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from ser.audio import is_audio_file
from ser.inference import load_model, predict_files
from ser.inference.export import CHECK_SECONDS, FILENAMES, export

REPO = Path(__file__).resolve().parents[1]


def pick_audio(folder: Path, minutes: float) -> tuple[list[Path], float]:
    """Files of ``folder`` in sorted order until they hold ``minutes`` of audio."""
    files, seconds = [], 0.0
    for path in sorted(p for p in folder.rglob("*") if is_audio_file(p)):
        files.append(path)
        seconds += sf.info(path).duration
        if seconds >= minutes * 60:
            return files, seconds
    raise SystemExit(f"{folder} holds only {seconds / 60:.1f} min of audio; need {minutes}")


def real_time_factor(model_path: Path, files: list[Path], seconds: float, batch: int) -> float:
    model = load_model(model_path)
    predict_files(model, files[:4], batch_size=batch)  # warm-up: allocator, kernels
    start = time.perf_counter()
    predict_files(model, files, batch_size=batch)
    return (time.perf_counter() - start) / seconds


def cold_start(model_path: Path, audio: Path) -> float:
    """Seconds from launching ``python -m ser predict`` to its first prediction row."""
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-m", "ser", "predict", str(model_path), str(audio)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        for line in process.stdout:
            if audio.name in line:
                elapsed = time.perf_counter() - start
                break
        else:
            raise SystemExit(f"ser predict printed no row for {audio}")
        process.wait()
    return elapsed


def table(title: str, header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = [header, *[tuple(str(c) for c in row) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines[1:]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--audio", type=Path, required=True, help="a folder of recordings")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="cold starts per path (median)")
    args = parser.parse_args()

    files, seconds = pick_audio(args.audio, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        parity = export(args.checkpoint, tmp)
        exported = Path(tmp) / FILENAMES["torchscript"]
        paths = {"checkpoint": args.checkpoint, "TorchScript export": exported}
        rtf = {
            name: real_time_factor(p, files, seconds, args.batch_size) for name, p in paths.items()
        }
        cold = {
            name: sorted(cold_start(p, files[0]) for _ in range(args.repeats))[args.repeats // 2]
            for name, p in paths.items()
        }
    threads = torch.get_num_threads()
    print(f"{len(files)} files, {seconds / 60:.1f} min of audio from {args.audio}; "
          f"{threads} torch threads; batch {args.batch_size}\n")  # fmt: skip
    print(table("real-time factor (lower is better; decode + resample + features + net)",
                ("model", "RTF", "audio-s per wall-s", "1 h of audio takes"),
                [(n, f"{r:.4f}", f"{1 / r:.0f}", f"{3600 * r:.0f} s") for n, r in rtf.items()]))  # fmt: skip
    print()
    print(table(f"cold start: process start to first prediction (median of {args.repeats})",
                ("model", "seconds"), [(n, f"{c:.2f}") for n, c in cold.items()]))  # fmt: skip
    print()
    print(table("export parity: max |logit difference| vs the checkpoint",
                ("format", *(f"{s:g} s input" for s in CHECK_SECONDS)),
                [(f, *("n/a" if d is None else f"{x:.1e}" for x in (d or CHECK_SECONDS)))
                 for f, d in parity.items()]))  # fmt: skip


if __name__ == "__main__":
    main()
