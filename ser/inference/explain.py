"""``ser explain MODEL FILE...``: which parts of the features drove the model's answer.

For each recording (its first ``--seconds``, as the model's pipeline prepares it), the attribution
of the top class's logit to every feature bin and frame (Captum, ``pip install 'ser[explain]'``):
``integrated-gradients`` (Sundararajan et al. 2017; from a baseline of the clip's quietest feature
value, i.e. silence, to the clip) or ``occlusion`` (Zeiler & Fergus 2014; how much the logit drops
when a patch of bins x frames is set to that baseline). Written per file as ``<stem>.png``: the
features (log-mel for the default front-end) with the positive attribution overlaid.
"""

from __future__ import annotations

import argparse
import importlib.util
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
    model: EmotionModel, wave: torch.Tensor, method: str = "integrated-gradients"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The features ``(n_features, F)`` of a ``(T,)`` recording, the attribution of the top
    class's logit to each of them ``(n_features, F)``, and the top class."""
    if importlib.util.find_spec("captum") is None:
        raise SERError(CAPTUM_HINT)
    from captum.attr import IntegratedGradients, Occlusion

    model = model.eval()
    with torch.inference_mode():
        _, features, lengths = model.run(wave[None])  # (1, n_features, F), (1,)
    features = features.clone()  # a normal tensor: gradients flow to it

    def logits(x: torch.Tensor) -> torch.Tensor:
        return model.net(x, lengths.expand(len(x))) / model.temperature  # (n, n_classes)

    with torch.no_grad():
        top = int(logits(features).argmax())
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


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser explain",
        description="Draw which feature bins and frames drove the model's answer, per file.",
    )
    parser.add_argument("model", help="a checkpoint from `ser fit` or a model folder")
    parser.add_argument("paths", nargs="+", help="audio files, folders or globs")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--method", choices=METHODS, default="integrated-gradients")
    parser.add_argument(
        "--seconds", type=float, default=6.0,
        help="explain the first this many seconds of each recording (default 6)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace PNGs an earlier run wrote there"
    )
    add_encoder_weights(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("captum") is None:
        raise SERError(CAPTUM_HINT)
    if not args.seconds > 0:
        raise SERError(f"--seconds {args.seconds}: give a positive number of seconds")
    model = load_model(args.model, encoder_weights=args.encoder_weights)
    if not isinstance(model, EmotionModel):
        raise SERError(
            f"{args.model}: an export holds compiled code, not the net's parts; give the checkpoint "
            "or the model folder (ser export --format hub)"
        )
    output = ensure_writable(args.output.expanduser(), f"--output {args.output}")
    paths = expand_paths(args.paths)
    refuse_to_replace([output / f"{p.stem}.png" for p in paths], args.overwrite,
                      f"--output {args.output}")  # fmt: skip
    shortest = model.pipeline.check_duration(model.net, args.seconds, "--seconds")
    hop = getattr(model.pipeline.frontend, "hop_length", None)
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
        frame_seconds = (hop or len(wave) / features.shape[1]) / model.sample_rate
        title = f"{path.name}: {model.class_names[top]} ({args.method})"
        target = output / f"{path.stem}.png"
        save(figure(features.numpy(), attributions.numpy(), title, frame_seconds), target)
        print(f"{path}: {model.class_names[top]}; wrote {target}")
        written += 1
    if not written:
        raise SERError(f"none of the {len(paths)} files could be explained (see above)")


def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))
