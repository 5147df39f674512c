"""Speed and memory of the data path, printed as Markdown tables.

1. Throughput in audio-seconds per wall-second on the same RAVDESS clips: (a) the seeds' per-clip
   pipeline (``librosa.load`` resampling the FLAC to librosa's default 22,050 Hz,
   ``noisereduce.reduce_noise``, ``librosa.feature.melspectrogram`` + ``power_to_db``, one clip at a
   time) against (b) ser's path with noise reduction on: decoded audio in memory (what the
   decoded-audio cache hands over), batches padded by ``collate``, then the DataModule's own
   ``on_after_batch_transfer`` on the device: TorchGate, waveform augmentation, log-mel,
   SpecAugment.
2. A training-step breakdown of ``configs/cnn2d.yaml`` on RAVDESS with
   ``configs/data/augment/onthefly.yaml``: waiting for the DataLoader, augmentation + features on
   the device, and the optimiser step, per step (a callback in a child process running ``ser fit``).
3. Peak resident memory (RSS) of that fit.

Run from the repository root::

    python -m benchmarks.data_path --root PATH/TO/RAVDESS [--clips 240] [--repeat 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "cnn2d.yaml"
RAVDESS_YAML = REPO / "configs" / "data" / "ravdess.yaml"
AUGMENT_YAML = REPO / "configs" / "data" / "augment" / "onthefly.yaml"


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# 1. Throughput -----------------------------------------------------------------------------------
def seeds_pipeline(paths: list[Path]) -> dict[str, float]:
    """Seconds spent per stage of the seeds' per-clip preprocessing, and the audio duration."""
    import librosa
    import noisereduce

    times = {"load": 0.0, "denoise": 0.0, "logmel": 0.0}
    audio_s = 0.0
    for path in paths:
        t0 = time.perf_counter()
        y, sr = librosa.load(path)  # librosa's default: resample to 22,050 Hz
        t1 = time.perf_counter()
        y = noisereduce.reduce_noise(y=y, sr=sr)
        t2 = time.perf_counter()
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=64)
        librosa.power_to_db(mel, ref=1.0)
        t3 = time.perf_counter()
        times["load"] += t1 - t0
        times["denoise"] += t2 - t1
        times["logmel"] += t3 - t2
        audio_s += len(y) / sr
    return {**times, "total": sum(times.values()), "audio_s": audio_s}


def augmentation(path: Path):
    """The :class:`ser.transforms.Augmentation` of a data config fragment."""
    import importlib

    import yaml

    from ser.transforms import Augmentation

    def build(spec: dict):
        module, _, name = spec["class_path"].rpartition(".")
        return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))

    settings = yaml.safe_load(path.read_text())["init_args"]["augment"]
    return Augmentation(**{key: [build(spec) for spec in settings.get(key) or []]
                           for key in ("waveform", "features")})  # fmt: skip


def ser_pipeline(
    root: Path,
    paths: list[Path],
    device: torch.device,
    augment: bool,
    denoise_where: str = "device",
    batch_size: int = 32,
) -> dict[str, float]:
    """Seconds of ser's batched path over ``paths``: ``total`` for the batches (decoded audio in
    memory, as the decoded-audio cache hands it over) and ``decode`` for building that audio once
    (reading, and noisereduce per clip when ``denoise.where`` is ``decode``)."""
    from functools import partial

    from ser.data import RAVDESS
    from ser.data.dataset import collate
    from ser.transforms import LogMel
    from ser.transforms.denoise import Denoise

    dm = RAVDESS(
        root=str(root), frontend=partial(LogMel, hop_ms=16.0),
        denoise=Denoise("nonstationary", where=denoise_where),
        augment=augmentation(AUGMENT_YAML) if augment else None,
    )  # fmt: skip
    dm.trainer = SimpleNamespace(training=True)
    t0 = time.perf_counter()
    waves = [dm.decode(p) for p in paths]  # what the decoded-audio cache holds
    decode = time.perf_counter() - t0
    items = [{"waveform": w, "label": 0, "speaker": "", "path": ""} for w in waves]
    L.seed_everything(0, verbose=False)
    warm = collate(items[:batch_size])
    dm.on_after_batch_transfer({k: v.to(device) if torch.is_tensor(v) else v
                                for k, v in warm.items()}, 0)  # fmt: skip
    sync(device)
    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        batch = collate(items[start : start + batch_size])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch = dm.on_after_batch_transfer(batch, 0)
    sync(device)
    total = time.perf_counter() - t0
    audio_s = sum(len(w) for w in waves) / dm.sample_rate
    return {"total": total, "decode": decode, "audio_s": audio_s}


def throughput_table(root: Path, n_clips: int, device: torch.device, repeat: int) -> str:
    paths = sorted(root.glob("Actor_*/*.*"))
    step = max(1, len(paths) // n_clips)
    paths = paths[::step][:n_clips]  # spread over all actors and emotions

    def fastest(pipeline) -> dict[str, float]:  # the best of `repeat` runs, as timeit advises
        return min((pipeline() for _ in range(repeat)), key=lambda run: run["total"])

    seeds = fastest(lambda: seeds_pipeline(paths))
    a = seeds["audio_s"] / seeds["total"]

    def row(name: str, seconds: float, audio_s: float, bold: bool = False) -> list[str]:
        ratio = f"{audio_s / seconds / a:.1f}"
        return [
            name,
            f"{seconds:.2f}",
            f"{audio_s / seconds:.0f}",
            f"**{ratio}**" if bold else ratio,
        ]

    on = f"batches of 32 on {device.type}"
    gate = fastest(lambda: ser_pipeline(root, paths, device, augment=False))
    gate_aug = fastest(lambda: ser_pipeline(root, paths, device, augment=True))
    cached = fastest(
        lambda: ser_pipeline(root, paths, device, augment=True, denoise_where="decode")
    )
    rows = [
        row("(a) seeds, per clip: librosa.load (22.05 kHz) + reduce_noise + "
            "melspectrogram/power_to_db", seeds["total"], seeds["audio_s"]),
        *(row(f"    of which {name}", seeds[key], seeds["audio_s"])[:3] + [""]
          for key, name in (("load", "librosa.load"), ("denoise", "noisereduce.reduce_noise"),
                            ("logmel", "log-mel"))),
        row(f"(b) ser, {on}: TorchGate + log-mel", gate["total"], gate["audio_s"]),
        row(f"(b) ser, {on}: TorchGate + augmentation + log-mel + SpecAugment",
            gate_aug["total"], gate_aug["audio_s"], bold=True),
        row(f"(b) ser, {on}, noise reduction cached with the decode (`denoise.where: decode`): "
            "augmentation + log-mel + SpecAugment, every epoch", cached["total"], cached["audio_s"],
            bold=True),
        row("    building that cache once: read + noisereduce per clip at 16 kHz",
            cached["decode"], cached["audio_s"]),
    ]  # fmt: skip
    title = (
        f"Throughput on {len(paths)} RAVDESS clips ({seeds['audio_s']:.0f} s of audio), "
        f"{torch.get_num_threads()} torch threads, fastest of {repeat} runs each"
    )
    return (
        title + "\n\n" + markdown(["pipeline", "wall s", "audio s / wall s", "ratio to (a)"], rows)
    )


# 2. and 3. Training-step breakdown and peak RSS, in a child process -------------------------------
class StepTimer(L.Callback):
    """Per training step: DataLoader wait, ``on_after_batch_transfer`` (augmentation + features)
    and the step itself; written as JSON to ``out`` at the end of the fit.

    Args:
        out: JSON file to write.
        skip: steps of each epoch left out (worker start-up, first-call allocations).
    """

    def __init__(self, out: str, skip: int = 2) -> None:
        self.out, self.skip = out, skip
        self.gaps: list[float] = []
        self.prep: list[float] = []
        self.compute: list[float] = []
        self._last_end: float | None = None
        self._prep_now = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        hook = dm.on_after_batch_transfer

        def timed(batch, dataloader_idx):
            t0 = time.perf_counter()
            out = hook(batch, dataloader_idx)
            sync(pl_module.device)
            if trainer.training:
                self._prep_now = time.perf_counter() - t0
            return out

        dm.on_after_batch_transfer = timed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        self._start = now
        if self._last_end is not None and batch_idx >= self.skip:
            self.gaps.append(now - self._last_end - self._prep_now)
            self.prep.append(self._prep_now)
        self._record = self._last_end is not None and batch_idx >= self.skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        now = time.perf_counter()
        if self._record:
            self.compute.append(now - self._start)
        self._last_end = now

    def on_fit_end(self, trainer, pl_module) -> None:
        Path(self.out).write_text(
            json.dumps({"wait": self.gaps, "prep": self.prep, "compute": self.compute})
        )


def fit_worker(root: Path, out: Path, epochs: int, accelerator: str) -> None:
    """Run ``ser fit`` with the step timer; add the peak RSS to its JSON."""
    from ser.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        main([
            "fit", "--config", str(CONFIG), "--data", str(RAVDESS_YAML),
            "--data", str(AUGMENT_YAML), "--data.root", str(root),
            "--trainer.max_epochs", str(epochs), "--trainer.accelerator", accelerator,
            "--trainer.logger.init_args.save_dir", tmp, "--trainer.default_root_dir", tmp,
            "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
            "--trainer.callbacks+=benchmarks.data_path.StepTimer",
            f"--trainer.callbacks.out={out}",
        ])  # fmt: skip
    result = json.loads(out.read_text())
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result))


def step_tables(root: Path, epochs: int, accelerator: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "steps.json"
        cmd = [sys.executable, "-m", "benchmarks.data_path", "--root", str(root),
               "--fit-worker", str(out), "--epochs", str(epochs), "--accelerator", accelerator]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        result = json.loads(out.read_text())
    n = len(result["compute"])
    wait, prep, compute = (sum(result[k]) / n * 1000 for k in ("wait", "prep", "compute"))
    step = wait + prep + compute
    rows = [
        ["waiting for the DataLoader (crop, collate)", f"{wait:.1f}", f"{100 * wait / step:.1f} %"],
        ["augmentation + log-mel + SpecAugment on the device", f"{prep:.1f}",
         f"{100 * prep / step:.1f} %"],
        ["forward + backward + optimiser", f"{compute:.1f}", f"{100 * compute / step:.1f} %"],
        ["step", f"{step:.1f}", "100 %"],
    ]  # fmt: skip
    steps = markdown(["per training step (mean)", "ms", "share"], rows)
    memory = markdown(
        ["fit", "peak RSS (MiB)", "wall s"],
        [[f"cnn2d + on-the-fly augmentation, RAVDESS, {epochs} epochs",
          f"{result['peak_rss_mib']:.0f}", f"{wall:.0f}"]],
    )  # fmt: skip
    return (
        f"Training-step breakdown, configs/cnn2d.yaml + augment/onthefly.yaml, {n} steps "
        f"(first 2 of each epoch left out), default num_workers\n\n{steps}\n\n"
        f"Peak memory\n\n{memory}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the RAVDESS folder")
    parser.add_argument("--clips", type=int, default=240, help="clips for the throughput table")
    parser.add_argument("--device", default="auto", help="device of ser's path: auto, cpu, cuda")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each pipeline; the fastest counts"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the timed fit")
    parser.add_argument("--skip-fit", action="store_true", help="only the throughput table")
    parser.add_argument("--fit-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--accelerator", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit_worker is not None:
        fit_worker(args.root, args.fit_worker, args.epochs, args.accelerator)
        return
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    print(throughput_table(args.root, args.clips, device, args.repeat), flush=True)
    if not args.skip_fit:
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        print("\n" + step_tables(args.root, args.epochs, accelerator), flush=True)


if __name__ == "__main__":
    main()
