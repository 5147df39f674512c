"""How well three out-of-distribution scores tell a RAVDESS model's own test clips from other audio.

For a checkpoint trained on RAVDESS (speaker split of ``configs/data/ravdess.yaml``: validation
actors 15-18, test actors 19-24), every clip is scored as ``ser predict`` scores a recording of one
window (clips here are at most 4 s) by

- ``msp``: 1 - the top class's calibrated probability (max-softmax, Hendrycks & Gimpel 2017);
- ``energy``: minus the log-sum-exp of the calibrated logits (Liu et al. 2020);
- ``features``: the distance of the clip's feature summary to the validation clips' statistics,
  the score ``ser predict`` uses (:mod:`ser.inference.ood`);

and the table gives, per set of other audio, the AUROC of each score (test clips vs that set;
0.5: no better than chance, 1: every other clip scores above every test clip) and the share of
the set above each score's threshold (the 95th percentile of the validation clips' scores, as
``ser`` fits it). The sets: EmoDB (German acted speech, another studio), the RAVDESS test clips
through a telephone band (300-3400 Hz) with white noise at 5 dB SNR, and generated white noise,
pink noise, music (random triads of harmonic tones with a drum click) and near-silence (noise at
-60 dBFS; digital silence is refused by ``ser predict`` before any score). Generated clips are
3 s, seeded::

    python -m benchmarks.ood CKPT --ravdess RAVDESS_PATH --emodb EMODB_PATH
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from ser.audio import audio_files, read_audio
from ser.inference.models import EmotionModel, load_model
from ser.inference.ood import OODStats, feature_summary, fit_ood

SCORES = ("msp", "energy", "features")
SECONDS = 3.0
N_GENERATED = 100


@torch.inference_mode()
def scores(model: EmotionModel, waves: list[torch.Tensor], stats: OODStats) -> dict:
    """Each score of each clip (whole clip, one forward pass): ``{name: (N,)}``."""
    out: dict[str, list[float]] = {name: [] for name in SCORES}
    for wave in waves:
        logits, features, feature_lengths = model.run(wave[None])  # (1, C), (1, n_features, F)
        out["msp"].append(1 - float(logits.softmax(dim=-1).max()))
        out["energy"].append(-float(torch.logsumexp(logits, dim=-1)))
        out["features"].append(float(stats.score(feature_summary(features, feature_lengths))))
    return {k: torch.tensor(v) for k, v in out.items()}


def ravdess_clips(root: Path, actors: range) -> list[Path]:
    return [p for p in audio_files(sorted(root.rglob("*")), root) if int(p.stem[-2:]) in actors]


def pink(n: int, generator: torch.Generator) -> torch.Tensor:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = torch.fft.rfft(torch.randn(n, generator=generator))
    f = torch.arange(len(spectrum)).clamp(min=1).float()
    return torch.fft.irfft(spectrum / f.sqrt(), n)


def music(n: int, rate: int, generator: torch.Generator) -> torch.Tensor:
    """Four random major/minor triads of harmonic tones (half a second each, repeated), with a
    decaying noise click on every beat."""
    t = torch.arange(n) / rate
    wave = torch.zeros(n)
    beat = round(0.5 * rate)
    for start in range(0, n, beat):
        root = 48 + int(torch.randint(0, 24, (1,), generator=generator))
        third = 3 + int(torch.randint(0, 2, (1,), generator=generator))
        segment = slice(start, min(n, start + beat))
        envelope = torch.exp(-3 * (t[segment] - t[start]))
        for note in (root, root + third, root + 7):
            f0 = 440 * 2 ** ((note - 69) / 12)
            for h in range(1, 6):
                if h * f0 < rate / 2:
                    wave[segment] += envelope * torch.sin(2 * math.pi * h * f0 * t[segment]) / h
        click = torch.randn(min(400, n - start), generator=generator)
        wave[start : start + len(click)] += click * torch.exp(-torch.arange(len(click)) / 60.0)
    return wave


def telephone(wave: torch.Tensor, rate: int, snr_db: float, generator: torch.Generator):
    """300-3400 Hz band (an FFT brick wall) plus white noise at ``snr_db``."""
    spectrum = torch.fft.rfft(wave)
    f = torch.fft.rfftfreq(len(wave), 1 / rate)
    spectrum[(f < 300) | (f > 3400)] = 0
    band = torch.fft.irfft(spectrum, len(wave))
    noise = torch.randn(len(wave), generator=generator)
    noise *= band.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() / 10 ** (snr_db / 20)
    return band + noise


def scale(wave: torch.Tensor, dbfs: float) -> torch.Tensor:
    """``wave`` at an RMS of ``dbfs`` dB below full scale."""
    return wave / wave.pow(2).mean().sqrt() * 10 ** (dbfs / 20)


def generated(kind: str, rate: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n = round(SECONDS * rate)
    make = {
        "white noise": lambda: scale(torch.randn(n, generator=generator), -20),
        "pink noise": lambda: scale(pink(n, generator), -20),
        "music": lambda: scale(music(n, rate, generator), -20),
        "near-silence (-60 dBFS)": lambda: scale(torch.randn(n, generator=generator), -60),
    }[kind]
    return [make() for _ in range(N_GENERATED)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a RAVDESS checkpoint of ser fit")
    parser.add_argument("--ravdess", type=Path, required=True, help="the RAVDESS folder")
    parser.add_argument("--emodb", type=Path, required=True, help="the EmoDB folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = load_model(args.checkpoint)
    rate = model.sample_rate
    read = lambda paths: [read_audio(p, rate) for p in paths]  # noqa: E731
    val = read(ravdess_clips(args.ravdess, range(15, 19)))
    test = read(ravdess_clips(args.ravdess, range(19, 25)))
    stats = model.ood
    if stats is None:  # checkpoints from before the statistics existed: fit them here
        with torch.inference_mode():
            summaries = []
            for wave in val:
                _, features, lengths = model.run(wave[None])
                summaries.append(feature_summary(features, lengths))
            stats = fit_ood(torch.cat(summaries))
        print(f"{args.checkpoint}: no OOD statistics stored; fitted on {len(val)} validation clips")
    generator = torch.Generator().manual_seed(0)
    sets = {
        "EmoDB (German, other studio)": read(audio_files(sorted(args.emodb.rglob("*")), args.emodb)),
        "RAVDESS test, telephone band + noise 5 dB": [
            telephone(w, rate, 5.0, generator) for w in test
        ],
    }  # fmt: skip
    for seed, kind in enumerate(("white noise", "pink noise", "music", "near-silence (-60 dBFS)")):
        sets[kind] = generated(kind, rate, seed)
    in_val, in_test = scores(model, val, stats), scores(model, test, stats)
    thresholds = {k: float(torch.quantile(v, 0.95)) for k, v in in_val.items()}
    if stats is not None:
        thresholds["features"] = stats.threshold
    header = ["other audio", "clips", *(f"AUROC {s}" for s in SCORES),
              *(f"flagged {s}" for s in SCORES)]  # fmt: skip
    lines = [header, ["RAVDESS test actors 19-24 (in-distribution)", str(len(test)), "", "", "",
                      *(f"{(in_test[s] > thresholds[s]).float().mean():.1%}" for s in SCORES)]]  # fmt: skip
    for name, waves in sets.items():
        other = scores(model, waves, stats)
        row = [name, str(len(waves))]
        for s in SCORES:
            labels = [0] * len(in_test[s]) + [1] * len(other[s])
            row.append(f"{roc_auc_score(labels, torch.cat([in_test[s], other[s]]).numpy()):.3f}")
        row += [f"{(other[s] > thresholds[s]).float().mean():.1%}" for s in SCORES]
        lines.append(row)
    print("| " + " | ".join(lines[0]) + " |")
    print("|" + " --- |" * len(lines[0]))
    for row in lines[1:]:
        print("| " + " | ".join(row) + " |")
    print(f"thresholds (95 % of {len(val)} validation clips): "
          + ", ".join(f"{s} {thresholds[s]:.3f}" for s in SCORES)
          + f"; {time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
