"""``ser export CKPT --output DIR``: the whole chain, waveform in, logits out, for deployment.

Writes ``model.ts`` (TorchScript) and ``model.onnx`` (ONNX, when the ``onnx`` and ``onnxscript``
packages are installed), each taking a mono waveform ``(B, T)`` at the model's sample rate (any
batch size, any length) and returning logits ``(B, n_classes)``, front-end included; and
``classes.json`` (class names, sample rate) beside them. ``--format hub`` writes a shareable model
folder instead (Hugging Face Hub layout): ``model.safetensors``, ``config.json`` (the checkpoint's
spec) and a ``README.md`` model card (:mod:`ser.inference.card`). Each export is checked against
the checkpoint on two input lengths before the command reports success.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ser.errors import SERError
from ser.inference.card import model_card
from ser.inference.models import (
    CLASSES_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    EmotionModel,
    add_encoder_weights,
    given_weights,
    load_folder,
    load_model,
    model_info,
    read_weights,
)
from ser.io import atomic_path, ensure_writable, refuse_to_replace, write_text

FORMATS = ("torchscript", "onnx", "hub")
#: What ``ser export`` writes without ``--format``.
DEFAULT_FORMATS = ("torchscript", "onnx")
FILENAMES = {"torchscript": "model.ts", "onnx": "model.onnx", "hub": WEIGHTS_FILE}
CARD_FILE = "README.md"
ONNX_HINT = "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript (or pip install 'ser[export]')"
USE_TORCHSCRIPT = "the TorchScript export (--format torchscript) works for every net"
#: Input lengths (s) the exports are checked on: the traced one and another.
CHECK_SECONDS = (3.0, 5.3)
#: Largest max |logit difference| between an export and the checkpoint that passes the check.
TOLERANCE = 1e-3


class WaveformClassifier(nn.Module):
    """What gets exported: ``waveform (B, T) -> logits (B, n_classes)``, every clip full length."""

    def __init__(self, model: EmotionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform)


def example_waveform(
    sample_rate: int, seconds: float, batch_size: int = 2, seed: int = 0
) -> torch.Tensor:
    """A reproducible noisy test input ``(batch_size, T)``."""
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch_size, round(seconds * sample_rate), generator=generator)


def max_logit_difference(
    model: EmotionModel,
    run: Callable[[torch.Tensor], torch.Tensor],
    seconds: float,
    batch_size: int = 2,
) -> float:
    """max |logits(model) - logits(run)| on a noisy input of ``seconds`` s."""
    waveform = example_waveform(model.sample_rate, seconds, batch_size, seed=round(seconds * 100))
    with torch.inference_mode():
        expected = model(waveform)
    return float((torch.as_tensor(np.asarray(run(waveform))) - expected).abs().max())


def export_torchscript(model: EmotionModel, path: Path) -> Path:
    """Trace ``model`` (batch and time stay dynamic) and save it with ``classes.json`` inside."""
    example = example_waveform(model.sample_rate, CHECK_SECONDS[0])
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # a deprecation notice; the parity check after saving is the real test
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(WaveformClassifier(model).eval(), example, check_trace=False)
    info = json.dumps(model_info(model))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp), _extra_files={CLASSES_FILE: info})
    return path


def onnx_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def export_onnx(model: EmotionModel, path: Path) -> Path:
    """Export ``model`` to ONNX with dynamic batch and time axes; class names in its metadata."""
    if not onnx_installed():
        raise SERError(ONNX_HINT)
    net = type(model.net).__name__
    if any(isinstance(m, nn.LSTM) for m in model.net.modules()):
        # torch.export cannot trace packed sequences, and unpacked it runs for many minutes
        raise SERError(f"ONNX export of {net} (an LSTM net) is not supported; {USE_TORCHSCRIPT}")
    if model.pipeline.gate is not None:
        # torch.export does not finish on the gate's STFT, smoothing and masking (minutes, no end)
        raise SERError("ONNX export of a model with noise reduction on the device (denoise where: "
                       f"device) is not supported; {USE_TORCHSCRIPT}")  # fmt: skip
    import logging

    example = example_waveform(model.sample_rate, CHECK_SECONDS[0])
    dims = {
        0: torch.export.Dim("batch"),
        1: torch.export.Dim("time", min=round(0.1 * model.sample_rate)),
    }
    quiet = logging.getLogger("torch.onnx")
    level, quiet.level = quiet.level, logging.ERROR  # it lists every optional op it cannot register
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                WaveformClassifier(model).eval(), (example,), input_names=["waveform"],
                output_names=["logits"], dynamic_shapes={"waveform": dims}, dynamo=True, verbose=False,
            )  # fmt: skip
    except Exception as error:  # torch.export's failures are many and long; name the net instead
        raise SERError(
            f"ONNX export of {net} failed ({type(error).__name__} in torch.onnx.export); "
            f"{USE_TORCHSCRIPT}"
        ) from error
    finally:
        quiet.level = level
    program.model.metadata_props[CLASSES_FILE] = json.dumps(model_info(model))
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)
    return path


def export_hub(checkpoint: Path, output: Path) -> Path:
    """Write the model folder: the net's weights as safetensors, the spec as ``config.json`` (as
    the checkpoint holds it, so every key travels) and the model card."""
    from safetensors.torch import save_file

    spec, weights = read_weights(checkpoint)
    tensors = {k: v.detach().contiguous().clone() for k, v in weights.items()}  # unshared, unmapped
    path = output / WEIGHTS_FILE
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text(output / CONFIG_FILE, json.dumps(spec, indent=2) + "\n")
    write_text(output / CARD_FILE, model_card(spec, checkpoint, output.resolve().name))
    return path


def onnx_runner(path: Path) -> Callable[[torch.Tensor], np.ndarray] | None:
    """Run an ONNX file with onnxruntime on the CPU; ``None`` when onnxruntime is absent."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(waveform: torch.Tensor) -> np.ndarray:
        try:
            return session.run(None, {"waveform": waveform.numpy()})[0]
        except Exception as error:  # e.g. a time axis the export fixed to the traced length
            raise SERError(
                f"{path}: onnxruntime cannot run the export on a {tuple(waveform.shape)} input "
                f"({type(error).__name__}); {USE_TORCHSCRIPT}"
            ) from error

    return run


def check(
    model: EmotionModel, run: Callable[[torch.Tensor], torch.Tensor], path: Path
) -> list[float]:
    """Max |logit difference| at each of :data:`CHECK_SECONDS`; a clear error beyond the tolerance."""
    differences = [
        max_logit_difference(model, run, s, batch_size=2 + i) for i, s in enumerate(CHECK_SECONDS)
    ]
    if max(differences) > TOLERANCE:
        raise SERError(
            f"{path}: the export disagrees with the checkpoint (max |logit difference| {max(differences):.2e})"
        )
    return differences


def written_files(output: Path, formats: list[str] | tuple[str, ...]) -> list[Path]:
    """The files an export of ``formats`` writes into ``output``."""
    files = [output / FILENAMES[f] for f in formats]
    if "hub" in formats:
        files += [output / CONFIG_FILE, output / CARD_FILE]
    if set(formats) - {"hub"}:
        files.append(output / CLASSES_FILE)
    return files


def export(
    checkpoint: str | Path,
    output: str | Path,
    formats: list[str] | None = None,
    overwrite: bool = False,
    encoder_weights: str | Path | None = None,
) -> dict[str, list[float] | None]:
    """Export ``checkpoint`` into ``output``; return each format's parity figures (``None``: unchecked).

    ``formats`` defaults to TorchScript and ONNX; ONNX is then skipped with a note when its
    packages are missing. A file the export would write that exists already is replaced only
    with ``overwrite`` (:func:`ser.io.refuse_to_replace`); other files of ``output`` stay.
    ``encoder_weights``: the front-end encoder's weights file the user named
    (:func:`ser.inference.models.load_model`); a model folder does not store its path.
    """
    checkpoint = Path(checkpoint).expanduser()
    model = load_model(checkpoint, encoder_weights=encoder_weights)
    if not isinstance(model, EmotionModel) or checkpoint.is_dir():
        raise SERError(f"{checkpoint}: already an export; `ser export` takes a training checkpoint")
    output = ensure_writable(Path(output).expanduser(), f"--output {output}")
    requested = formats is not None
    # by default ONNX only where its packages are: an earlier model.onnx is then not replaced
    formats = (
        list(dict.fromkeys(formats)) if requested
        else [f for f in DEFAULT_FORMATS if f != "onnx" or onnx_installed()]
    )  # fmt: skip
    classes = json.dumps(model_info(model), indent=2) + "\n"
    same = output / CLASSES_FILE  # the same classes.json again (another format) replaces nothing
    same_classes = same.is_file() and same.read_text(errors="replace") == classes
    files = [f for f in written_files(output, formats) if not (f == same and same_classes)]
    refuse_to_replace(files, overwrite, f"--output {output}")
    if not requested and "onnx" not in formats:
        print(f"note: skipping ONNX. {ONNX_HINT}", file=sys.stderr)
    figures: dict[str, list[float] | None] = {}
    for fmt in formats:
        path = output / FILENAMES[fmt]
        if fmt == "hub":
            export_hub(checkpoint, output)
            loaded = load_folder(output, encoder_weights=given_weights(encoder_weights))
            figures[fmt] = check(model, lambda w, m=loaded: m(w).detach(), output)
        elif fmt == "torchscript":
            export_torchscript(model, path)
            loaded = load_model(path, encoder_weights=encoder_weights)
            figures[fmt] = check(model, lambda w, m=loaded: m(w).detach(), path)
        else:
            written = False  # export_onnx writes atomically: an earlier export stays if it fails
            try:
                export_onnx(model, path)
                written = True
                run = onnx_runner(path)
                figures[fmt] = None if run is None else check(model, run, path)
            except SERError as error:
                if written:
                    path.unlink()  # never leave an export that failed its check
                if requested:
                    raise
                print(f"note: skipping ONNX. {error}", file=sys.stderr)
    if set(figures) - {"hub"}:  # the model folder's config.json holds the classes already
        write_text(output / CLASSES_FILE, classes)
    return figures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser export",
        description="Export a checkpoint's whole chain (mono waveform at the model's rate in, logits out).",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by `ser fit`")
    parser.add_argument(
        "--output", "-o", required=True, help="folder for model.ts / model.onnx / classes.json"
    )
    parser.add_argument(
        "--format", nargs="+", choices=FORMATS, default=None,
        help="formats (default: torchscript onnx); hub: a shareable model folder (model.safetensors, "
        "config.json, README.md model card)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the files an earlier export wrote there (model.ts, model.onnx, classes.json, "
        "or the model folder's files); without it an existing file is an error",
    )  # fmt: skip
    add_encoder_weights(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    figures = export(
        args.checkpoint, args.output, args.format, args.overwrite, args.encoder_weights
    )
    output = Path(args.output)
    for fmt, differences in figures.items():
        if differences is None:
            verdict = "not checked (pip install onnxruntime to check it)"
        else:
            at = ", ".join(
                f"{d:.1e} at {s:g} s" for d, s in zip(differences, CHECK_SECONDS, strict=True)
            )
            verdict = f"max |logit difference| vs the checkpoint: {at}"
        print(f"wrote {output / FILENAMES[fmt]}: {verdict}")
        if fmt == "hub":
            print(f"wrote {output / CONFIG_FILE}, {output / CARD_FILE}")
    if set(figures) - {"hub"}:
        print(f"wrote {output / CLASSES_FILE}")
