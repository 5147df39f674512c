"""``ser explore``: what a corpus holds, as PNG figures and a printed summary (seeds S0, S4).

Figures (in ``--out``): ``counts.png`` (clips per class and per speaker), ``durations.png``
(duration histogram per class), ``waveforms.png`` and ``features.png`` (one clip per emotion, the
features the data's pipeline computes).
The data is any corpus config, exactly as ``ser fit`` takes it::

    ser explore --data configs/data/ravdess.yaml --data.root PATH --out explore/ravdess
    ser explore --config RUN/config.yaml            # the data section of a run config
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ser.data.base import SERDataModule
from ser.io import atomic_path, ensure_writable, refuse_to_replace

log = logging.getLogger("ser")

#: The figures :func:`explore` writes, by kind.
FIGURES = {kind: f"{kind}.png" for kind in ("counts", "durations", "waveforms", "features")}


@dataclass
class Exploration:
    """What :func:`explore` found and wrote."""

    summary: str
    counts: dict[str, dict[str, int]]  # "class" / "speaker" -> name -> clips
    durations: dict[str, list[float]]  # class -> seconds per clip
    files: dict[str, Path]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _grid(n: int):
    import matplotlib.pyplot as plt

    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def explore(dm: SERDataModule, out_dir: str | Path) -> Exploration:
    """Decode the corpus of ``dm`` (through its cache), write the figures, return the summary.

    Args:
        dm: a corpus DataModule (its ``emotions``/``merge`` selection applies).
        out_dir: folder for the PNG files (created).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    scanned = dm.scan(dm.check_root())
    dm.verify(scanned)
    clips = dm.select(scanned)
    usable, waves = dm.usable(clips)
    kept = [(c, dm._emotion_to_class[c.emotion], w) for c, w in zip(usable, waves, strict=True)]
    classes = [c for c in dm.class_names if any(k[1] == c for k in kept)]
    sr = dm.sample_rate
    per_class = Counter(k[1] for k in kept)
    per_speaker = Counter(k[0].speaker for k in kept)
    durations = {c: [k[2].numel() / sr for k in kept if k[1] == c] for c in classes}
    files: dict[str, Path] = {}

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 2]})
    ax1.bar(classes, [per_class[c] for c in classes], color="tab:blue")
    ax1.set_title("clips per class")
    ax1.tick_params(axis="x", rotation=45)
    speakers = sorted(per_speaker)
    ax2.bar(speakers, [per_speaker[s] for s in speakers], color="tab:green")
    ax2.set_title(f"clips per speaker ({len(speakers)})")
    ax2.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    files["counts"] = _save(fig, out_dir / FIGURES["counts"])

    fig, axes = _grid(len(classes))
    bins = np.linspace(0, max(max(d) for d in durations.values()), 30)
    for ax, c in zip(axes, classes, strict=False):
        ax.hist(durations[c], bins=bins, color="tab:purple")
        ax.set_title(f"{c} (n={len(durations[c])})")
        ax.set_xlabel("duration (s)")
    fig.tight_layout()
    files["durations"] = _save(fig, out_dir / FIGURES["durations"])

    # One clip per class: the first by path, so the figures are reproducible.
    examples = {c: next(k for k in kept if k[1] == c) for c in classes}
    fig, axes = _grid(len(classes))
    for ax, (c, (clip, _, wave)) in zip(axes, examples.items(), strict=False):
        ax.plot(np.arange(wave.numel()) / sr, wave.numpy(), linewidth=0.4)
        ax.set_title(f"{c}: {clip.path.name}", fontsize=8)
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    files["waveforms"] = _save(fig, out_dir / FIGURES["waveforms"])

    pipeline = dm.pipeline.eval()
    frontend = type(pipeline.frontend).__name__
    fig, axes = _grid(len(classes))
    for ax, (c, (clip, _, wave)) in zip(axes, examples.items(), strict=False):
        with torch.no_grad():
            feats, _ = pipeline(wave[None].float(), torch.tensor([wave.numel()]))  # (1, C, F)
        if feats.dim() == 4:  # a pretrained encoder's (1, L, D, F): its top layer
            frontend = f"{type(pipeline.frontend).__name__} layer {feats.shape[1]}"
            feats = feats[:, -1]
        ax.imshow(feats[0].numpy(), origin="lower", aspect="auto", cmap="magma",
                  extent=(0, wave.numel() / sr, 0, feats.shape[1]))  # fmt: skip
        ax.set_title(f"{c}: {clip.path.name}", fontsize=8)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"{frontend} channel")
    fig.tight_layout()
    files["features"] = _save(fig, out_dir / FIGURES["features"])

    total = sum(sum(d) for d in durations.values())
    lines = [
        f"{type(dm).__name__} at {dm.root}: {len(kept)} clips ({len(clips) - len(kept)} skipped), "
        f"{len(classes)} classes, {len(speakers)} speakers, {total / 3600:.2f} h; recorded at "
        f"{native_rates([c for c, _, _ in kept])}, read at {sr} Hz",
        f"{'class':<10} {'clips':>6} {'min s':>6} {'mean s':>6} {'max s':>6}",
    ]
    for c in classes:
        d = np.array(durations[c])
        lines.append(f"{c:<10} {len(d):>6} {d.min():>6.2f} {d.mean():>6.2f} {d.max():>6.2f}")
    lines.append("clips per speaker: " + ", ".join(f"{s} {per_speaker[s]}" for s in speakers))
    return Exploration(
        summary="\n".join(lines),
        counts={"class": dict(per_class), "speaker": dict(per_speaker)},
        durations=durations,
        files=files,
    )


def native_rates(clips: list) -> str:
    """The corpus's own sample rates as ``48000 Hz`` or ``16000 Hz (12), 48000 Hz (3)``."""
    import soundfile as sf

    counts = Counter(sf.info(str(c.path)).samplerate for c in clips)
    if len(counts) == 1:
        return f"{next(iter(counts))} Hz"
    return ", ".join(f"{rate} Hz ({n})" for rate, n in sorted(counts.items()))


def data_arguments(path: str | Path) -> list[str]:
    """``["--data", JSON]`` of the ``data`` section of run config ``path`` (a whole run's config or
    a fragment such as ``configs/distill.yaml``); ``[]`` when it has none."""
    import yaml

    config = yaml.safe_load(Path(path).read_text()) or {}
    return ["--data", json.dumps(config["data"])] if config.get("data") is not None else []


def _run_config_to_data(argv: list[str]) -> list[str]:
    """Replace ``--config RUN.yaml`` by its ``data`` section, so a run config works as is."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            i += 1 if "=" in arg else 2
            data = data_arguments(path)
            if not data:
                raise SystemExit(f"ser explore: {path} has no data section")
            out += data
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: list[str] | None = None) -> Exploration:
    """``ser explore [--config RUN.yaml] [--data CORPUS.yaml] [--data.root PATH] [--out DIR]``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="ser explore",
        description="Figures and a summary of a corpus: clips per class and speaker, durations, "
        "one waveform and log-mel per emotion. --config takes a run config (its data section).",
    )
    parser.add_argument("--config", help="a run config (only its data section is used)")
    parser.add_subclass_arguments(SERDataModule, "data", required=True)
    parser.add_argument("--out", default="explore", help="folder for the PNG figures")
    parser.add_argument("--overwrite", type=bool, default=False,
                        help="replace the figures an earlier run wrote in --out")  # fmt: skip
    cfg = parser.parse_args(_run_config_to_data(list(sys.argv[1:] if argv is None else argv)))
    out = ensure_writable(cfg.out, "--out")
    refuse_to_replace([out / name for name in FIGURES.values()], cfg.overwrite, f"--out {cfg.out}")
    dm = parser.instantiate_classes(cfg).data
    result = explore(dm, cfg.out)  # ser.__main__ reports a SERError in one line
    print(result.summary)
    for name, path in result.files.items():
        print(f"wrote {name}: {path}")
    return result
