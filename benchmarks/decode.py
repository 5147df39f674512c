"""Decoding audio at any source rate: the resampler before (torchaudio) and now (soxr), in one run.

1. Seconds per audio-minute to decode 2-s clips (16-bit WAV, read, mixed down, resampled to
   16 kHz) by source rate: torchaudio's ``functional.resample`` with the settings ser had
   (6 zero crossings, roll-off 0.99) against :func:`ser.audio.read_audio` (soxr), and each rate's
   cost relative to 48 kHz.
   Then soxr's resampling alone at each quality setting (``LQ`` to ``VHQ``), milliseconds per 2-s
   clip, best of ``--repeat``: what the choice of :data:`ser.audio.RESAMPLE_QUALITY` costs.
2. The same for a 10-minute file: read whole (:func:`ser.audio.read_audio`) and block by block as
   ``ser predict`` reads it (:class:`ser.audio.AudioStream`). The old resampler runs on it only at
   the rates where it took under 0.1 s for a 2-s clip (elsewhere: ``-``).
3. A generated TESS-sized corpus (2,800 2-s clips at 24,414 Hz, in TESS's layout) set up end to end
   by ``ser.data.TESS`` with an empty decoded-audio cache (scan, decode, cache, split), then again
   from the cache. The old resampler's figure is its per-clip cost from table 1 times 2,800.
4. With ``--emodb PATH`` (EmoDB, recorded at 16 kHz; the shared copy is at 22,050 Hz): the
   resampler's effect downstream, for each soxr quality and torchaudio's resampler: decode
   seconds, the log-mel features' difference from soxr's ``VHQ`` (mean and largest absolute dB
   over the test clips), and the test UAR of ``ser baseline``'s SVM on the clips' log-mel
   statistics (speaker split: fold 0 of 6).

Run from the repository root::

    python -m benchmarks.decode [--repeat 20] [--clips 2800] [--skip-old] [--emodb PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ser.audio import RESAMPLER, AudioStream, load_audio, read_audio

RATES = (8000, 11025, 12207, 22050, 24414, 44056, 44100, 47999, 48000, 96000)
TARGET = 16000


def old_read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """ser's decode before soxr: torchaudio's band-limited sinc resampler, rebuilt per call."""
    wave, rate = load_audio(path)
    return old_resample(wave, rate, sample_rate)


def speech_band_signal(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding 120-220 Hz pitch up to the file's Nyquist rate, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = 120 + 100 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, int(rate / 2 / 220)))
    wave = 0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def timed(fn, repeat: int) -> tuple[float, float, int]:
    """(best, median, runs) seconds of ``fn()`` after one warm-up; one run when that took > 1 s."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > 1.0:
        return first, first, 1
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), repeat


def stream(path: Path) -> None:
    for _ in AudioStream(path, TARGET):
        pass


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def per_minute(seconds: float, audio_seconds: float) -> str:
    return f"{seconds / audio_seconds * 60:.4f}"


def clip_table(folder: Path, repeat: int, skip_old: bool) -> dict[int, float]:
    """Table 1; returns the old resampler's best seconds per 2-s clip by rate. soxr's runs go
    round the rates ``repeat`` times, so a busy moment of a shared machine hits every rate."""
    paths = {rate: folder / f"clip-{rate}.wav" for rate in RATES}
    for rate, path in paths.items():
        sf.write(path, speech_band_signal(2.0, rate), rate, subtype="PCM_16")
        read_audio(path, TARGET)  # warm-up
    runs: dict[int, list[float]] = {rate: [] for rate in RATES}
    for _ in range(repeat):
        for rate, path in paths.items():
            start = time.perf_counter()
            read_audio(path, TARGET)
            runs[rate].append(time.perf_counter() - start)
    new = {rate: (min(t), statistics.median(t), repeat) for rate, t in runs.items()}
    old = {}
    if not skip_old:
        old = {rate: timed(lambda p=path: old_read_audio(p, TARGET), repeat)
               for rate, path in paths.items()}  # fmt: skip
    rows = []
    for rate in RATES:
        best, median, _ = new[rate]
        row = [f"{rate:,}", per_minute(best, 2.0), per_minute(median, 2.0),
               f"{best / new[48000][0]:.2f}"]  # fmt: skip
        if not skip_old:
            o_best, _, runs = old[rate]
            row += [per_minute(o_best, 2.0), runs, f"{o_best / old[48000][0]:.0f}",
                    f"{o_best / best:.0f}"]  # fmt: skip
        rows.append(row)
    header = ["source Hz", "soxr best s/min", "soxr median s/min", "soxr vs 48 kHz"]
    if not skip_old:
        header += ["torchaudio best s/min", "torchaudio runs", "torchaudio vs 48 kHz",
                   "torchaudio / soxr"]  # fmt: skip
    print(f"\n1. Decoding 2-s clips to {TARGET} Hz: seconds per audio-minute ({RESAMPLER})\n")
    print(markdown(header, rows))
    return {rate: old[rate][0] for rate in old}


def quality_speed_table(repeat: int) -> None:
    """Table 1b: soxr alone, milliseconds per 2-s clip, by quality and source rate."""
    import soxr

    qualities, rows = ("LQ", "MQ", "HQ", "VHQ"), []
    for rate in RATES:
        clip = speech_band_signal(2.0, rate)
        row = [f"{rate:,}"]
        for quality in qualities:
            run = lambda c=clip, r=rate, q=quality: soxr.resample(c, r, TARGET, q)  # noqa: E731
            best = timed(run, repeat)[0]
            row.append(f"{best * 1000:.2f}")
        rows.append(row)
    print("\n1b. soxr alone by quality: milliseconds per 2-s clip (best)\n")
    print(markdown(["source Hz", *qualities], rows))


def long_table(folder: Path, repeat: int, old_clip: dict[int, float]) -> None:
    """Table 2: a 10-minute file, whole and block by block."""
    seconds, rows = 600.0, []
    for rate in RATES:
        path = folder / f"long-{rate}.wav"
        clip = speech_band_signal(2.0, rate)
        sf.write(path, np.tile(clip, round(seconds / 2.0)), rate, subtype="PCM_16")
        whole, _, _ = timed(lambda p=path: read_audio(p, TARGET), repeat)
        blocks, _, _ = timed(lambda p=path: stream(p), repeat)
        row = [f"{rate:,}", per_minute(whole, seconds), per_minute(blocks, seconds)]
        if old_clip:
            fast = old_clip.get(rate, 1.0) < 0.1
            old = timed(lambda p=path: old_read_audio(p, TARGET), 1)[0] if fast else None
            row.append("-" if old is None else per_minute(old, seconds))
        rows.append(row)
        path.unlink()
    header = ["source Hz", "soxr whole s/min", "soxr blocks (ser predict) s/min"]
    print(f"\n2. Decoding a 10-minute file to {TARGET} Hz: seconds per audio-minute\n")
    print(markdown(header + (["torchaudio whole s/min"] if old_clip else []), rows))


def write_tess(root: Path, n_clips: int, rate: int) -> None:
    """``n_clips`` 2-s clips in TESS's layout (2 speakers x 7 emotions x words) at ``rate``."""
    emotions = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad")
    per_folder = -(-n_clips // 14)
    clips = [speech_band_signal(2.0, rate, seed=seed) for seed in range(8)]
    k = 0
    for speaker in ("OAF", "YAF"):
        for emotion in emotions:
            folder = root / f"{speaker}_{emotion}"
            folder.mkdir(parents=True)
            for word in range(per_folder):
                if k == n_clips:
                    return
                wave = clips[k % len(clips)] * (0.5 + k / n_clips)  # no two files identical
                sf.write(folder / f"{speaker}_w{word}_{emotion}.wav", wave, rate, subtype="PCM_16")
                k += 1


def corpus_table(folder: Path, n_clips: int, old_clip: dict[int, float]) -> None:
    """Table 3: a TESS-sized corpus at 24,414 Hz set up end to end (scan, decode, cache, split)."""
    from ser.data import TESS
    from ser.data.splits import SplitSpec

    rate, root = 24414, folder / "tess"
    write_tess(root, n_clips, rate)
    os.environ["SER_CACHE_DIR"] = str(folder / "cache")
    split = SplitSpec(test_speakers=["YAF"], val_speakers=[])
    rows = []
    for what in ("empty cache: decode and build it", "from the cache"):
        start = time.perf_counter()
        TESS(root=str(root), max_seconds=2.0, split=split).setup("fit")
        rows.append([what, f"{time.perf_counter() - start:.1f}"])
    if old_clip:
        rows.append(["torchaudio, estimated (2-s clip cost x clips)",
                     f"{old_clip[rate] * n_clips:.0f}"])  # fmt: skip
    print(f"\n3. A generated TESS-sized corpus ({n_clips} 2-s clips at {rate:,} Hz) set up\n")
    print(markdown(["", "seconds"], rows))


def quality_table(root: Path) -> None:
    """Table 4: each resampler setting's decode time, features and SVM UAR on EmoDB."""
    import logging
    from unittest import mock

    import ser.audio
    from ser.baseline import pooled_features, run_baseline
    from ser.data import EmoDB

    logging.getLogger("ser").setLevel(logging.WARNING)
    frontend = {"class_path": "ser.transforms.LogMel", "init_args": {"normalize": False}}
    settings = ["VHQ", "HQ", "MQ", "LQ", "torchaudio"]
    features, rows = {}, []
    for setting in settings:
        patch = (
            mock.patch.object(ser.audio, "resample", lambda w, r, s: old_resample(w, r, s))
            if setting == "torchaudio"
            else mock.patch.object(ser.audio, "RESAMPLE_QUALITY", setting)
        )
        with patch, tempfile.TemporaryDirectory() as out:
            dm = EmoDB(root=str(root), cache=False, verify=False, frontend=frontend)
            start = time.perf_counter()
            dm.setup("fit")
            seconds = time.perf_counter() - start
            (result,) = run_baseline(dm, Path(out))
            features[setting] = pooled_features(dm, "test", dm.pipeline.eval())[0]
        diff = np.abs(features[setting] - features["VHQ"])
        rows.append([setting, f"{seconds:.1f}", f"{diff.mean():.4f}", f"{diff.max():.3f}",
                     f"{result.test['uar']:.4f}"])  # fmt: skip
    print("\n4. EmoDB decoded to 16 kHz by each resampler setting (setup: scan, decode, split)\n")
    header = ["resampler", "setup s", "mean |dB| vs VHQ", "max |dB| vs VHQ", "SVM test UAR"]
    print(markdown(header, rows))


def old_resample(wave: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    if rate == sample_rate:
        return wave
    return AF.resample(wave, rate, sample_rate, lowpass_filter_width=6, rolloff=0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs after a warm-up")
    parser.add_argument("--clips", type=int, default=2800, help="clips of the generated corpus")
    parser.add_argument("--skip-old", action="store_true",
                        help="leave out torchaudio's resampler (minutes at some rates)")  # fmt: skip
    parser.add_argument("--emodb", type=Path, help="EmoDB folder: table 4 (resampler settings)")
    parser.add_argument("--only-emodb", action="store_true", help="table 4 alone")
    args = parser.parse_args()
    if args.emodb is not None:
        quality_table(args.emodb)
    if args.only_emodb:
        return
    with tempfile.TemporaryDirectory() as tmp:
        old_clip = clip_table(Path(tmp), args.repeat, args.skip_old)
        quality_speed_table(args.repeat)
        long_table(Path(tmp), max(1, args.repeat // 10), old_clip)
        corpus_table(Path(tmp), args.clips, old_clip)


if __name__ == "__main__":
    main()
