"""``ser explain MODEL FILE...``: which parts of the features drove the model's answer.

For each recording (its first ``--seconds``, as the model's pipeline prepares it), the attribution
of the top class's logit to every feature bin and frame (Captum, ``pip install 'ser[explain]'``):
``integrated-gradients`` (Sundararajan et al. 2017; from a baseline of the clip's quietest feature
value, i.e. silence, to the clip) or ``occlusion`` (Zeiler & Fergus 2014; how much the logit drops
when a patch of bins x frames is set to that baseline). Written per file as ``<stem>.png``: the
features (log-mel for the default front-end) with the positive attribution overlaid.

``--test`` explains a test split instead (the corpus and split of ``--data``, as ``ser baseline``
takes them, fitted to the model as ``ser test --ckpt_path`` fits them): each clip's centre crop,
attributed to its true class's logit, averaged per class into ``<class>.png`` (the mean
attribution over the features' bins and frames, and its mean over frames per bin) and
``attributions.npz`` / ``attributions.csv``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from ser.audio import read_audio
from ser.errors import AudioError, SERError
from ser.inference.models import EmotionModel, add_encoder_weights, load_model
from ser.inference.predict import expand_paths
from ser.io import atomic_path, ensure_writable, refuse_to_replace

METHODS = ("integrated-gradients", "occlusion")
CAPTUM_HINT = "ser explain needs Captum: pip install captum (or pip install 'ser[explain]')"
#: Occlusion patch: feature bins x frames.
PATCH = (8, 10)


def attribution(
    model: EmotionModel,
    wave: torch.Tensor,
    method: str = "integrated-gradients",
    target: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The features ``(n_features, F)`` of a ``(T,)`` recording, the attribution of a class's
    logit to each of them ``(n_features, F)``, and that class.

    Args:
        target: the class whose logit is attributed; ``None``: the top class.
    """
    if importlib.util.find_spec("captum") is None:
        raise SERError(CAPTUM_HINT)
    from captum.attr import IntegratedGradients, Occlusion

    model = model.eval()
    with torch.inference_mode():
        _, features, lengths = model.run(wave[None])  # (1, n_features, F), (1,)
    features = features.clone()  # a normal tensor: gradients flow to it

    def logits(x: torch.Tensor) -> torch.Tensor:
        return model.net(x, lengths.expand(len(x))) / model.temperature  # (n, n_classes)

    if target is None:
        with torch.no_grad():
            top = int(logits(features).argmax())
    else:
        top = target
    baseline = float(features.min())  # the clip's floor: silence for log-mel
    if method == "integrated-gradients":
        with torch.enable_grad():
            attributions = IntegratedGradients(logits).attribute(
                features, baselines=baseline, target=top, n_steps=32, internal_batch_size=8
            )
    elif method == "occlusion":
        with torch.no_grad():
            attributions = Occlusion(logits).attribute(
                features, sliding_window_shapes=PATCH, strides=(PATCH[0] // 2, PATCH[1] // 2),
                baselines=baseline, target=top, perturbations_per_eval=16,
            )  # fmt: skip
    else:
        raise SERError(f"method {method!r}: use one of {', '.join(METHODS)}")
    return features[0].detach(), attributions[0].detach(), top


def figure(features: np.ndarray, attributions: np.ndarray, title: str, frame_seconds: float):
    """The features as an image with the positive attribution in red over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = np.clip(attributions, 0, None)
    top = positive.max() if positive.max() > 0 else 1.0
    extent = (0, features.shape[1] * frame_seconds, 0, features.shape[0])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.imshow(features, origin="lower", aspect="auto", cmap="gray", extent=extent)
    shown = np.ma.masked_less(positive / top, 0.05)  # the faintest left out: the features show
    overlay = ax.imshow(shown, origin="lower", aspect="auto", cmap="Reds", alpha=0.55,
                        extent=extent, vmin=0, vmax=1)  # fmt: skip
    fig.colorbar(overlay, ax=ax, label="attribution (share of max)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("feature bin (mel band)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def class_attributions(
    model: EmotionModel, clips: list[tuple[torch.Tensor, int]], method: str = "integrated-gradients"
) -> dict:
    """Attributions averaged per class over ``clips`` (``(T,)`` waveform, true class), each
    attributed to its true class's logit.

    Returns:
        ``maps`` ``(n_classes, n_features, F)``: the mean attribution per bin and frame, frames
        aligned at each clip's start (a frame averages the clips that reach it; NaN where none
        of a class does); ``profile`` ``(n_classes, n_features)``: the mean over clips of each
        clip's mean attribution over its frames; ``features`` ``(n_classes, n_features)``: the
        same mean of the features; ``counts`` ``(n_classes,)``: clips per class.
    """
    n = len(model.class_names)
    sums: list[list[torch.Tensor]] = [[] for _ in range(n)]  # per class: (n_features, F) maps
    profiles: list[list[torch.Tensor]] = [[] for _ in range(n)]
    levels: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for wave, label in clips:
        features, attributions, _ = attribution(model, wave, method, target=label)
        sums[label].append(attributions)
        profiles[label].append(attributions.mean(dim=1))  # (n_features,)
        levels[label].append(features.mean(dim=1))
    n_features = model.pipeline.n_features
    frames = max((a.shape[1] for maps in sums for a in maps), default=0)
    maps = np.full((n, n_features, frames), np.nan)
    profile, mean_features = np.full((n, n_features), np.nan), np.full((n, n_features), np.nan)
    for k in range(n):
        if not sums[k]:
            continue
        total, count = torch.zeros(n_features, frames), torch.zeros(frames)
        for a in sums[k]:
            total[:, : a.shape[1]] += a
            count[: a.shape[1]] += 1
        maps[k] = (total / count).where(count > 0, torch.nan).numpy()  # (n_features, F)
        profile[k] = torch.stack(profiles[k]).mean(dim=0).numpy()
        mean_features[k] = torch.stack(levels[k]).mean(dim=0).numpy()
    counts = np.array([len(m) for m in sums])
    return {"maps": maps, "profile": profile, "features": mean_features, "counts": counts}


def class_figure(mean_map: np.ndarray, profile: np.ndarray, title: str, frame_seconds: float):
    """A class's mean attribution over bins and frames (red: raises the class's logit, blue:
    lowers it), beside its mean over frames per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = float(np.nanmax(np.abs(mean_map))) or 1.0
    fig, (ax, side) = plt.subplots(1, 2, figsize=(9, 3.4), width_ratios=(4, 1), sharey=True)
    extent = (0, mean_map.shape[1] * frame_seconds, 0, mean_map.shape[0])
    image = ax.imshow(mean_map, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-top,
                      vmax=top, extent=extent)  # fmt: skip
    fig.colorbar(image, ax=side, label="mean attribution")
    ax.set_xlabel("time from the clip's start (s)")
    ax.set_ylabel("feature bin (mel band)")
    ax.set_title(title, fontsize=9)
    bins = np.arange(len(profile)) + 0.5
    side.barh(bins, profile, height=1.0, color=np.where(profile >= 0, "tab:red", "tab:blue"))
    side.axvline(0, color="black", linewidth=0.5)
    side.set_xlabel("mean over frames", labelpad=12)  # below the 1e-3 of the ticks
    side.locator_params(axis="x", nbins=3)
    side.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    return fig


def write_class_attributions(
    result: dict, class_names: list[str], output: Path, title: str, frame_seconds: float
) -> list[Path]:
    """``<class>.png`` for each class with clips, ``attributions.npz`` (the arrays of
    :func:`class_attributions` and ``class_names``) and ``attributions.csv`` (the profile: one
    row per feature bin, one column per class)."""
    written = []
    for k, name in enumerate(class_names):
        if result["counts"][k]:
            path = output / f"{name}.png"
            label = f"{name}: {title}, mean over {result['counts'][k]} clips"
            save(class_figure(result["maps"][k], result["profile"][k], label, frame_seconds), path)
            written.append(path)
    npz = output / "attributions.npz"
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, class_names=np.array(class_names), **result)
    csv_path = output / "attributions.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["feature_bin", *class_names])
        for i, row in enumerate(result["profile"].T):
            writer.writerow([i, *(f"{v:.6g}" for v in row)])
    return [*written, npz, csv_path]


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser explain",
        description="Draw which feature bins and frames drove the model's answer, per file; or "
        "(--test) the attributions averaged per class over a test split.",
    )
    parser.add_argument("model", help="a checkpoint from `ser fit` or a model folder")
    parser.add_argument("paths", nargs="*", help="audio files, folders or globs")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--method", choices=METHODS, default="integrated-gradients")
    parser.add_argument(
        "--seconds", type=float, default=6.0,
        help="explain the first this many seconds of each recording (default 6)",
    )  # fmt: skip
    parser.add_argument(
        "--test", action="store_true",
        help="instead of files: the test split of --data (e.g. --data configs/data/ravdess.yaml "
        "--data.root PATH), each clip attributed to its true class, averaged per class",
    )  # fmt: skip
    parser.add_argument(
        "--per-class", type=int, default=None, metavar="N",
        help="--test: N test clips of each class, evenly spread over the split (default all)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace PNGs an earlier run wrote there"
    )
    add_encoder_weights(parser)
    return parser


def load_explainable(path: str, encoder_weights: Path | None = None) -> EmotionModel:
    model = load_model(path, encoder_weights=encoder_weights)
    if not isinstance(model, EmotionModel):
        raise SERError(
            f"{path}: an export holds compiled code, not the net's parts; give the checkpoint "
            "or the model folder (ser export --format hub)"
        )
    return model


def run(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("captum") is None:
        raise SERError(CAPTUM_HINT)
    if not args.seconds > 0:
        raise SERError(f"--seconds {args.seconds}: give a positive number of seconds")
    if not args.paths:
        raise SERError("ser explain needs audio files (or --test --data ... for a test split)")
    model = load_explainable(args.model, args.encoder_weights)
    output = ensure_writable(args.output.expanduser(), f"--output {args.output}")
    paths = expand_paths(args.paths)
    refuse_to_replace([output / f"{p.stem}.png" for p in paths], args.overwrite,
                      f"--output {args.output}")  # fmt: skip
    shortest = model.pipeline.check_duration(model.net, args.seconds, "--seconds")
    written = 0
    for path in paths:
        try:
            wave = read_audio(path, model.sample_rate)[: round(args.seconds * model.sample_rate)]
        except AudioError as err:
            print(f"skipping {err}")
            continue
        if len(wave) < shortest * model.sample_rate:
            print(f"skipping {path}: {len(wave) / model.sample_rate:.2f} s, shorter than the "
                  f"{shortest:.2f} s the model needs")  # fmt: skip
            continue
        features, attributions, top = attribution(model, model.recording(wave), args.method)
        title = f"{path.name}: {model.class_names[top]} ({args.method})"
        target = output / f"{path.stem}.png"
        frame_seconds = frame_length(model, len(wave), features.shape[1])
        save(figure(features.numpy(), attributions.numpy(), title, frame_seconds), target)
        print(f"{path}: {model.class_names[top]}; wrote {target}")
        written += 1
    if not written:
        raise SERError(f"none of the {len(paths)} files could be explained (see above)")


def frame_length(model: EmotionModel, n_samples: int, n_frames: int) -> float:
    """Seconds per feature frame: the front-end's hop, else the clip's length over its frames."""
    hop = getattr(model.pipeline.frontend, "hop_length", None)
    return (hop or n_samples / n_frames) / model.sample_rate


def test_split_clips(model: EmotionModel, data_args: list[str]) -> list[tuple[torch.Tensor, int]]:
    """The test split of ``--data ...`` (fitted to the model as ``ser test --ckpt_path`` fits
    it): each clip's centre crop and its class index in the model's classes."""
    from jsonargparse import ArgumentParser

    from ser.cli import adapt_data_to_checkpoint
    from ser.data.base import SERDataModule

    parser = ArgumentParser(prog="ser explain --test", default_config_files=[])
    parser.add_subclass_arguments(
        SERDataModule, "data", required=True,
        help="corpus and split, as in `ser fit` (e.g. configs/data/ravdess.yaml)",
    )  # fmt: skip
    if not data_args:
        raise SERError("ser explain --test needs the data: --data configs/data/<corpus>.yaml ...")
    cfg = parser.parse_args(data_args)  # bad options: jsonargparse's error, status 2
    if model.spec is None:
        raise SERError("ser explain --test needs a model read from a checkpoint or model folder")
    adapt_data_to_checkpoint(cfg.data, model.spec)
    data = parser.instantiate_classes(cfg).data
    data.prepare_data()
    data.setup("test")
    test = data.datasets.get("test")
    if test is None or len(test) == 0:
        raise SERError(f"{type(data).__name__}: the test split holds no clips of the model's "
                       f"classes ({', '.join(model.class_names)})")  # fmt: skip
    return [(item["waveform"], int(item["label"])) for item in (test[i] for i in range(len(test)))]


def run_test(args: argparse.Namespace, data_args: list[str]) -> dict:
    if importlib.util.find_spec("captum") is None:
        raise SERError(CAPTUM_HINT)
    if args.paths:
        raise SERError(f"--test explains the test split of --data; it takes no files (got "
                       f"{args.paths[0]}): drop them, or drop --test")  # fmt: skip
    if args.per_class is not None and args.per_class < 1:
        raise SERError(f"--per-class {args.per_class}: give a positive number of clips")
    model = load_explainable(args.model, args.encoder_weights)
    output = ensure_writable(args.output.expanduser(), f"--output {args.output}")
    names = [*(f"{c}.png" for c in model.class_names), "attributions.npz", "attributions.csv"]
    refuse_to_replace([output / n for n in names], args.overwrite, f"--output {args.output}")
    clips = test_split_clips(model, data_args)
    shortest = model.pipeline.shortest(getattr(model.net, "min_frames", 1))
    per_class: list[list[tuple[torch.Tensor, int]]] = [[] for _ in model.class_names]
    for wave, label in clips:
        if len(wave) < shortest * model.sample_rate:
            print(f"skipping a {len(wave) / model.sample_rate:.2f}-s clip: shorter than the "
                  f"{shortest:.2f} s the model needs")  # fmt: skip
        else:
            per_class[label].append((wave, label))
    kept = []
    for group in per_class:  # --per-class: spread over the split, so over its speakers
        n = len(group) if args.per_class is None else min(args.per_class, len(group))
        kept += [group[i] for i in np.linspace(0, len(group) - 1, n).round().astype(int)]
    if not kept:
        raise SERError(f"none of the {len(clips)} test clips could be explained (see above)")
    result = class_attributions(model, kept, args.method)
    frame_seconds = frame_length(model, len(kept[0][0]), result["maps"].shape[2])
    title = f"{args.method}, true class's logit"
    for path in write_class_attributions(result, model.class_names, output, title, frame_seconds):
        print(f"wrote {path}")
    counts = ", ".join(f"{c} {n}" for c, n in zip(model.class_names, result["counts"], strict=True))
    print(f"clips per class: {counts}")
    return result


def split_data_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without the ``--data`` options (and their values), and those options."""
    own, data = [], []
    tokens = iter(argv)
    for token in tokens:
        if token == "--data" or token.startswith(("--data.", "--data=")):
            data.append(token)
            if "=" not in token:
                data.append(next(tokens, ""))
        else:
            own.append(token)
    return own, data


def main(argv: list[str] | None = None) -> dict | None:
    own, data_args = split_data_args(list(argv) if argv is not None else sys.argv[1:])
    args = build_parser().parse_args(own)
    if args.test:
        return run_test(args, data_args)
    if data_args:
        raise SERError(f"ser explain: {data_args[0]} chooses a test split: add --test")
    run(args)
    return None
