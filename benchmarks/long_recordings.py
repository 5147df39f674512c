"""Long recordings in ``ser predict``: memory and time of block reading against the whole-file
path, and the real-time factor of voice-activity segments against fixed windows.

    python benchmarks/long_recordings.py --workdir DIR [--checkpoint CKPT] [--hours 1] [--repeats 2]

Writes its recordings into DIR (about 0.8 GB for one hour). Prints two tables:

1. one hour of 16 kHz mono and one of 48 kHz stereo (16-bit WAV, a noisy moving tone): wall time
   (best of ``--repeats``) and peak resident memory of a fresh process predicting it, through
   the whole-file path ``ser predict`` had (decode all, resample, cut, classify) and through
   today's block reading (:func:`ser.inference.predict_files`), with their ratio;
2. a 10-minute recording of speech-like bursts with silences between: real-time factor (wall
   seconds per audio second, median of ``--repeats`` after a warm-up) with fixed windows and
   with ``--segments vad``, and how much of the audio each classifies.

Without ``--checkpoint`` the model is the tiny CNN2D of the tests: memory and decoding dominate.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ser.audio import HOP_SECONDS, WINDOW_SECONDS, load_audio, recording_windows, resample  # noqa: E402
from ser.inference import clip_probabilities, load_model, predict_files  # noqa: E402


def write_long(path: Path, hours: float, rate: int, channels: int) -> Path:
    """A noisy moving tone, written a minute at a time (16-bit WAV)."""
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for minute in range(round(hours * 60)):
            t = np.arange(60 * rate) / rate
            tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * np.sin(2 * np.pi * 0.05 * t) + minute) * t)
            f.write(
                (tone[:, None] + 0.05 * rng.standard_normal((t.size, channels))).astype(np.float32)
            )
    return path


def whole_file(model, path: Path, batch_size: int = 16) -> int:
    """The whole-file path ``ser predict`` had: decode all, resample, cut, classify in batches."""
    wave, rate = load_audio(path)
    _, windows = recording_windows(
        resample(wave, rate, model.sample_rate), model.sample_rate, WINDOW_SECONDS, HOP_SECONDS
    )
    for i in range(0, len(windows), batch_size):
        clip_probabilities(model, windows[i : i + batch_size], torch.device("cpu"))
    return len(windows)


def measure(checkpoint: Path, path: Path, how: str) -> dict:
    """Run in a fresh process: seconds and peak RSS of predicting ``path`` one way."""
    model = load_model(checkpoint)
    start = time.perf_counter()
    if how == "whole":
        n_windows = whole_file(model, path)
    else:
        n_windows = len(predict_files(model, [path])[0].starts)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"seconds": seconds, "peak_mib": peak, "windows": n_windows}


def in_subprocess(checkpoint: Path, path: Path, how: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", how, "--checkpoint", str(checkpoint), str(path)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(checkpoint: Path, workdir: Path, hours: float, repeats: int) -> None:
    print(f"\n1. {hours:g} h recordings: whole-file path vs block reading (fresh process each)")
    print(f"{'recording':<22} {'path':<7} {'time (s)':>9} {'peak RSS (MiB)':>15} {'windows':>8}")
    for rate, channels in ((16000, 1), (48000, 2)):
        name = f"{rate // 1000} kHz {'mono' if channels == 1 else 'stereo'}"
        path = write_long(workdir / f"long_{rate}_{channels}.wav", hours, rate, channels)
        results = {}
        for how in ("whole", "blocks"):
            runs = [in_subprocess(checkpoint, path, how) for _ in range(repeats)]
            results[how] = {
                "seconds": min(r["seconds"] for r in runs),
                "peak_mib": max(r["peak_mib"] for r in runs),
                "windows": runs[0]["windows"],
            }
            r = results[how]
            print(
                f"{name:<22} {how:<7} {r['seconds']:>9.1f} {r['peak_mib']:>15.0f} {r['windows']:>8}"
            )
        w, b = results["whole"], results["blocks"]
        print(f"{name:<22} {'ratio':<7} {b['seconds'] / w['seconds']:>9.2f} "
              f"{b['peak_mib'] / w['peak_mib']:>15.2f}   (blocks / whole)")  # fmt: skip


def vad_table(checkpoint: Path, workdir: Path, repeats: int) -> None:
    from tests.helpers import speech_with_pauses

    rng = np.random.default_rng(1)
    pattern, total = [], 0.0
    while total < 600:
        for kind, low, high in (("silence", 1.0, 10.0), ("speech", 1.0, 8.0)):
            seconds = float(rng.uniform(low, high))
            pattern.append((kind, seconds))
            total += seconds
    path = workdir / "talk_10min.wav"
    sf.write(path, speech_with_pauses(pattern), 16000)
    speech = sum(s for kind, s in pattern if kind == "speech")
    model = load_model(checkpoint)
    warm = workdir / "warm.wav"
    sf.write(warm, speech_with_pauses([("speech", 5.0), ("silence", 3.0)]), 16000)
    print(f"\n2. {total / 60:.1f} min of speech-like bursts ({speech / total:.0%} speech), "
          f"real-time factor (median of {repeats})")  # fmt: skip
    print(f"{'segments':<9} {'RTF':>8} {'windows':>8} {'audio classified (s)':>21}")
    rtfs = {}
    for segments in ("windows", "vad"):
        predict_files(model, [warm], segments=segments)  # warm-up: allocator, kernels, VAD model
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            (prediction,) = predict_files(model, [path], segments=segments)
            times.append(time.perf_counter() - start)
        rtfs[segments] = statistics.median(times) / total
        covered = sum(e - s for s, e in zip(prediction.starts, prediction.ends, strict=True))
        print(f"{segments:<9} {rtfs[segments]:>8.4f} {len(prediction.starts):>8} {covered:>21.0f}")
    print(f"{'ratio':<9} {rtfs['vad'] / rtfs['windows']:>8.2f}   (vad / windows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="folder for the generated recordings")
    parser.add_argument(
        "--checkpoint", type=Path, help="a ser fit checkpoint (default: tiny CNN2D)"
    )
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", choices=("whole", "blocks"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        torch.set_num_threads(1)
        print(json.dumps(measure(args.checkpoint, args.path, args.measure)))
        return
    if args.workdir is None:
        parser.error("--workdir is required")
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from tests.helpers import write_checkpoint

        checkpoint = write_checkpoint(args.workdir / "tiny.ckpt")
    print(f"model: {checkpoint.name}; torch threads: 1")
    memory_table(checkpoint, args.workdir, args.hours, args.repeats)
    vad_table(checkpoint, args.workdir, args.repeats)


if __name__ == "__main__":
    main()
