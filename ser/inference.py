"""Inference: load a checkpoint or an exported model, predict emotions of audio files.

Lightning-free on purpose (only torch, torchaudio, soundfile and ``ser``'s pure modules), so
``ser predict`` starts fast and runs where the training stack is not installed.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ser.audio import is_silent, load_audio, resample
from ser.errors import AudioError, SERError
from ser.spec import SPEC_KEY, build_net, read_checkpoint
from ser.transforms.frontends import build_frontend

log = logging.getLogger(__name__)

#: Name of the class-names file beside (and inside) an exported model.
CLASSES_FILE = "classes.json"
#: Recordings shorter than this are zero-padded up to it: the nets pool time several times.
MIN_SECONDS = 0.25


class EmotionModel(nn.Module):
    """The whole chain, front-end then net: ``(waveform (B, T), lengths (B,)) -> logits (B, C)``.

    Args:
        frontend: waveform -> features module (see :mod:`ser.transforms.frontends`).
        net: features -> logits module (see :mod:`ser.models`).
        class_names: class names in logit order.
        sample_rate: the rate the waveform must have (Hz).
        denoise: the noise reduction the model was trained with (``{"mode", "prop_decrease"}``),
            applied to each recording before windowing; ``None``: none.
    """

    def __init__(
        self,
        frontend: nn.Module,
        net: nn.Module,
        class_names: list[str],
        sample_rate: int,
        denoise: dict | None = None,
    ) -> None:
        super().__init__()
        self.frontend, self.net = frontend, net
        self.class_names = list(class_names)
        self.sample_rate = int(sample_rate)
        self.denoise = denoise

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:  # every clip fills the batch: what an exported model assumes
            lengths = torch.full(
                waveform.shape[:1], waveform.shape[1], dtype=torch.long, device=waveform.device
            )
        features, feature_lengths = self.frontend(waveform, lengths)  # (B, n_features, F), (B,)
        return self.net(features, feature_lengths)  # (B, n_classes)


class ExportedModel(nn.Module):
    """A TorchScript export (waveform in, logits out) behind :class:`EmotionModel`'s interface.

    The export knows no ``lengths``: every clip of a batch must be full length (unpadded).
    """

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        class_names: list[str],
        sample_rate: int,
        denoise: dict | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.class_names = list(class_names)
        self.sample_rate = int(sample_rate)
        self.denoise = denoise

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and not bool((lengths == waveform.shape[1]).all()):
            raise ValueError("an exported model takes unpadded clips: batch clips of equal length")
        return self.module(waveform)  # (B, n_classes)


class Ensemble(nn.Module):
    """Several models of one label space as one: the mean of their class probabilities.

    ``forward`` returns the log of that mean, so a softmax of it (what :func:`predict_files` takes)
    is the mean itself. Members may differ in front-end and net; they must agree on the class
    names (in order), the sample rate and the noise reduction, which act before the models.

    Args:
        members: models from :func:`load_model`.
    """

    def __init__(self, members: list[EmotionModel | ExportedModel]) -> None:
        super().__init__()
        if len(members) < 2:
            raise SERError("an ensemble needs at least two models")
        first = model_info(members[0])
        for i, member in enumerate(members[1:], start=2):
            info = model_info(member)
            for key in ("class_names", "sample_rate", "denoise"):
                if info[key] != first[key]:
                    raise SERError(
                        f"ensemble: model {i} has {key} {info[key]}, model 1 has {first[key]}; "
                        "members must share classes (in order), sample rate and noise reduction"
                    )
        self.members = nn.ModuleList(members)
        self.class_names, self.sample_rate = first["class_names"], first["sample_rate"]
        self.denoise = first["denoise"]

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        probabilities = torch.stack(
            [m(waveform, lengths).float().softmax(dim=-1) for m in self.members]
        )  # (n_members, B, n_classes)
        return probabilities.mean(dim=0).log()  # (B, n_classes)


def model_info(model: EmotionModel | ExportedModel | Ensemble) -> dict:
    """What an exported model needs beside its weights (written as ``classes.json``)."""
    return {
        "class_names": list(model.class_names),
        "sample_rate": int(model.sample_rate),
        "denoise": model.denoise,
    }


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code; ``torch.save`` archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


def load_checkpoint(path: Path) -> EmotionModel:
    """Rebuild :class:`EmotionModel` from a training checkpoint's ``ser`` entry and weights."""
    checkpoint = read_checkpoint(path, str(path))
    if not isinstance(checkpoint, dict) or SPEC_KEY not in checkpoint:
        raise SERError(
            f"{path}: a checkpoint without the {SPEC_KEY!r} entry (class names, sample rate, "
            "front-end); it was not saved by `ser fit`, or by an older version: retrain, or export from a newer one"
        )
    spec = checkpoint[SPEC_KEY]
    if not spec.get("frontend"):
        raise SERError(
            f"{path}: its {SPEC_KEY!r} entry holds no front-end settings; it cannot map audio to features"
        )
    frontend = build_frontend(**spec["frontend"])
    net = build_net(spec["net"], len(spec["class_names"]), spec["n_features"], spec["sample_rate"])
    prefix = "net."
    weights = {
        k[len(prefix) :]: v
        for k, v in checkpoint.get("state_dict", {}).items()
        if k.startswith(prefix)
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise SERError(
            f"{path}: the weights do not fit the net {spec['net']['class_path']}: {err}"
        ) from None
    return EmotionModel(
        frontend, net, spec["class_names"], spec["sample_rate"], spec.get("denoise")
    ).eval()


def load_exported(path: Path) -> ExportedModel:
    """Load a TorchScript export and its class names (inside it, or ``classes.json`` beside it)."""
    extra = {CLASSES_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still supported
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if extra[CLASSES_FILE]:
        info = json.loads(extra[CLASSES_FILE])
    elif (path.parent / CLASSES_FILE).is_file():
        info = json.loads((path.parent / CLASSES_FILE).read_text())
    else:
        raise SERError(
            f"{path}: no {CLASSES_FILE} inside it or beside it; export it again with `ser export`"
        )
    return ExportedModel(
        module, info["class_names"], info["sample_rate"], info.get("denoise")
    ).eval()


def load_model(path: str | Path) -> EmotionModel | ExportedModel:
    """Load a training checkpoint (``.ckpt``) or a TorchScript export (``model.ts``) for inference.

    Raises:
        SERError: the file is missing, is neither, or is a checkpoint without the ``ser`` entry.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SERError(f"{path}: no such checkpoint or exported model")
    if _is_torchscript(path):
        return load_exported(path)
    return load_checkpoint(path)


def load_models(paths: list[str | Path]) -> EmotionModel | ExportedModel | Ensemble:
    """:func:`load_model` of one path, or the :class:`Ensemble` of several."""
    models = [load_model(p) for p in paths]
    return models[0] if len(models) == 1 else Ensemble(models)


@dataclass
class Prediction:
    """One recording's result: per window, and for the whole (mean of the window probabilities)."""

    path: Path
    duration: float  #: seconds of audio
    starts: list[float] = field(default_factory=list)  #: window start times (s)
    ends: list[float] = field(default_factory=list)  #: window end times (s)
    window_probabilities: torch.Tensor | None = None  # (n_windows, n_classes)

    @property
    def probabilities(self) -> torch.Tensor:
        return self.window_probabilities.mean(dim=0)  # (n_classes,)


def window_bounds(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the windows covering ``n_samples``.

    A recording no longer than ``window`` is one window; otherwise windows step by ``hop`` and the
    last one is aligned to the end, so every window is full and the tail is not dropped.
    """
    if n_samples <= window:
        return [(0, n_samples)]
    n_windows = math.ceil((n_samples - window) / hop) + 1
    starts = [min(i * hop, n_samples - window) for i in range(n_windows)]
    return [(s, s + window) for s in dict.fromkeys(starts)]


def _windows(
    paths: Iterable[Path], sample_rate: int, window: int, hop: int, denoise: dict | None = None
) -> Iterator[tuple[Prediction, list[torch.Tensor]]]:
    """Yield each readable recording's :class:`Prediction` (to fill) and its windows, noise-reduced
    first as in training when ``denoise`` is given."""
    min_samples = round(MIN_SECONDS * sample_rate)
    for path in paths:
        try:
            wave, rate = load_audio(path)  # (T,)
        except AudioError as err:
            log.warning("skipping %s", err)
            continue
        if is_silent(wave):
            log.warning("skipping %s: silent (peak below -80 dBFS), no speech to classify", path)
            continue
        if rate < sample_rate:
            log.warning(
                "%s: %d Hz audio upsampled to the model's %d Hz; it holds nothing above %d Hz, "
                "so expect lower accuracy than on full-band audio", path, rate, sample_rate, rate // 2
            )  # fmt: skip
        wave = resample(wave, rate, sample_rate)
        if denoise is not None:
            from ser.transforms.denoise import reduce_noise  # noisereduce: only when needed

            wave = reduce_noise(wave, sample_rate, denoise["mode"], denoise["prop_decrease"])
        prediction = Prediction(Path(path), duration=len(wave) / sample_rate)
        if len(wave) < min_samples:
            wave = nn.functional.pad(wave, (0, min_samples - len(wave)))
        bounds = window_bounds(len(wave), window, hop)
        prediction.starts = [s / sample_rate for s, _ in bounds]
        prediction.ends = [min(e / sample_rate, prediction.duration) for _, e in bounds]
        yield prediction, [wave[s:e] for s, e in bounds]


@torch.inference_mode()
def clip_probabilities(
    model: nn.Module, clips: list[torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Probabilities of ``clips`` (any lengths): ``(N, n_classes)``.

    Clips run in groups of equal length, never padded: the nets' convolutions see a little past
    the valid frames, so padding would make a file's result depend on the files batched with it.
    """
    probabilities = torch.empty(len(clips), 0)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(i)
    for rows in by_length.values():
        batch = torch.stack([clips[i] for i in rows]).to(device)  # (n, T)
        group = model(batch).float().softmax(dim=-1).cpu()  # (n, n_classes)
        if probabilities.shape[1] == 0:
            probabilities = torch.empty(len(clips), group.shape[1])
        probabilities[rows] = group
    return probabilities


def predict_files(
    model: EmotionModel | ExportedModel | Ensemble,
    paths: Iterable[str | Path],
    window_seconds: float = 4.0,
    hop_seconds: float = 2.0,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Predict the emotion of each recording, window by window.

    Windows of every file are batched together, those of equal length in one forward pass (the
    windows of long recordings all have the window's length).
    Unreadable files are skipped with a warning naming them.

    Args:
        model: from :func:`load_model`.
        paths: audio files in any format soundfile reads, at any rate, mono or not.
        window_seconds: window length (s); shorter recordings are a single window.
        hop_seconds: step between windows (s).
        batch_size: windows per forward pass.
        device: ``cpu`` or ``cuda``.

    Returns:
        One :class:`Prediction` per readable file, in the order given.
    """
    if window_seconds <= 0 or hop_seconds <= 0 or batch_size < 1:
        raise SERError(
            f"window ({window_seconds}), hop ({hop_seconds}) and batch size ({batch_size}) must be positive"
        )
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SERError("--device cuda: no CUDA device is available; use --device cpu")
    model = model.to(device).eval()
    rate = model.sample_rate
    window, hop = round(window_seconds * rate), round(hop_seconds * rate)

    predictions: list[Prediction] = []
    pending: list[tuple[int, int, torch.Tensor]] = []  # (prediction index, window index, clip)
    results: dict[tuple[int, int], torch.Tensor] = {}

    def flush() -> None:
        probabilities = clip_probabilities(model, [clip for *_, clip in pending], device)
        results.update(
            {(p, w): probs for (p, w, _), probs in zip(pending, probabilities, strict=True)}
        )
        pending.clear()

    for prediction, clips in _windows(paths, rate, window, hop, model.denoise):
        index = len(predictions)
        predictions.append(prediction)
        for w, clip in enumerate(clips):
            pending.append((index, w, clip))
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()
    for index, prediction in enumerate(predictions):
        prediction.window_probabilities = torch.stack(
            [results.pop((index, w)) for w in range(len(prediction.starts))]
        )
    return predictions
