"""Models for inference: a checkpoint's or model folder's pipeline and net, a TorchScript export,
or an ensemble.

Lightning-free on purpose (only torch, torchaudio, soundfile and ``ser``'s pure modules), so
``ser predict`` starts fast and runs where the training stack is not installed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ser.errors import SERError
from ser.inference.ood import OOD_KEY, OODStats, feature_summary
from ser.pretrained import architecture_only
from ser.safe import first_line, load_tensors
from ser.spec import (
    SPEC_KEY,
    build_net,
    check_finite,
    check_info,
    check_pipeline,
    is_torchscript,
    read_checkpoint,
    read_spec,
)
from ser.transforms.denoise import Denoise
from ser.transforms.pipeline import FeaturePipeline

#: Name of the class-names file beside (and inside) an exported model.
CLASSES_FILE = "classes.json"
#: A model folder (``ser export --format hub``, the Hugging Face Hub layout): the checkpoint's
#: spec as JSON and the net's weights as safetensors.
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class EmotionModel(nn.Module):
    """The whole chain, feature pipeline (eval), net, then temperature:
    ``(waveform (B, T), lengths (B,)) -> logits (B, C)``.

    Args:
        pipeline: the feature pipeline the net was trained with (see
            :class:`ser.transforms.FeaturePipeline`).
        net: features -> logits module (see :mod:`ser.models`).
        class_names: class names in logit order.
        temperature: the logits are divided by it, so that their softmax is calibrated
            (:mod:`ser.calibration`; 1: as the net gives them). Exports bake it in.
        ood: the validation clips' feature statistics that score how unlike the training data a
            clip is (:mod:`ser.inference.ood`); ``None``: no such score.
    """

    def __init__(
        self,
        pipeline: FeaturePipeline,
        net: nn.Module,
        class_names: list[str],
        temperature: float = 1.0,
        ood: OODStats | None = None,
    ) -> None:
        super().__init__()
        self.pipeline, self.net = pipeline.eval(), net
        self.class_names = list(class_names)
        self.sample_rate = pipeline.sample_rate
        if not temperature > 0:
            raise SERError(f"temperature {temperature} must be positive")
        self.temperature = float(temperature)
        self.ood = ood
        #: The checked spec it was rebuilt from (:func:`build_model`); ``None``: built in code.
        self.spec: dict | None = None

    def recording(self, wave: torch.Tensor) -> torch.Tensor:
        """A ``(n_samples,)`` recording at ``sample_rate`` prepared as in training."""
        return self.pipeline.recording(wave)

    @property
    def decode_denoise(self) -> Denoise | None:
        """The noise reduction applied to whole recordings before windowing (else ``None``)."""
        return self.pipeline.decode_denoise

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(waveform, lengths)[0]

    def run(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, n_classes)``, features ``(B, n_features, F)`` and their lengths ``(B,)``."""
        if lengths is None:  # every clip fills the batch: what an exported model assumes
            lengths = torch.full(
                waveform.shape[:1], waveform.shape[1], dtype=torch.long, device=waveform.device
            )
        features, feature_lengths = self.pipeline(waveform, lengths)  # (B, n_features, F), (B,)
        logits = self.net(features, feature_lengths) / self.temperature  # (B, n_classes)
        return logits, features, feature_lengths

    def scored(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, n_classes)`` and each clip's OOD score over the threshold ``(B,)`` (above
        1: unlike the training data; ``None`` without OOD statistics)."""
        logits, features, feature_lengths = self.run(waveform, lengths)
        if self.ood is None:
            return logits, None
        summary = feature_summary(features, feature_lengths)  # (B, 2 * n_features)
        return logits, self.ood.score(summary) / self.ood.threshold  # (B,)


class ExportedModel(nn.Module):
    """A TorchScript export (waveform in, logits out) behind :class:`EmotionModel`'s interface.

    The export knows no ``lengths``: every clip of a batch must be full length (unpadded). Its
    OOD statistics (``classes.json``) come with the front-end's spec: the OOD score runs that
    front-end beside the export.
    """

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        class_names: list[str],
        sample_rate: int,
        denoise: Denoise | None = None,
        ood: OODStats | None = None,
        ood_pipeline: FeaturePipeline | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.class_names = list(class_names)
        self.sample_rate = int(sample_rate)
        self.decode_denoise = denoise
        self.ood = ood if ood_pipeline is not None else None  # the score needs both
        self.ood_pipeline = ood_pipeline

    def recording(self, wave: torch.Tensor) -> torch.Tensor:
        """A ``(n_samples,)`` recording prepared as in training (decode-time noise reduction)."""
        if self.decode_denoise is None:
            return wave
        return self.decode_denoise.recording(wave, self.sample_rate)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and not bool((lengths == waveform.shape[1]).all()):
            raise ValueError("an exported model takes unpadded clips: batch clips of equal length")
        return self.module(waveform)  # (B, n_classes)

    def scored(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As :meth:`EmotionModel.scored`."""
        logits = self(waveform, lengths)
        if self.ood is None:
            return logits, None
        lengths = torch.full(waveform.shape[:1], waveform.shape[1], device=waveform.device)
        features, feature_lengths = self.ood_pipeline(waveform, lengths)  # (B, n_features, F)
        summary = feature_summary(features, feature_lengths)  # (B, 2 * n_features)
        return logits, self.ood.score(summary) / self.ood.threshold  # (B,)


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
        self.decode_denoise = members[0].decode_denoise

    def recording(self, wave: torch.Tensor) -> torch.Tensor:
        """A recording prepared as every member expects (they share it)."""
        return self.members[0].recording(wave)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.combine([m(waveform, lengths) for m in self.members])

    def scored(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` and the mean OOD score of the members that have one (``None``: none)."""
        outputs = [m.scored(waveform, lengths) for m in self.members]
        scores = [s for _, s in outputs if s is not None]
        ood = torch.stack(scores).mean(dim=0) if scores else None  # (B,)
        return self.combine([logits for logits, _ in outputs]), ood

    @staticmethod
    def combine(logits: list[torch.Tensor]) -> torch.Tensor:
        """The members' logits (each ``(B, n_classes)``) as one: the log of the mean of their
        class probabilities ``(B, n_classes)``."""
        probabilities = torch.stack([x.float().softmax(dim=-1) for x in logits])  # (M, B, C)
        return probabilities.mean(dim=0).log()  # (B, n_classes)


def has_ood(model: nn.Module) -> bool:
    """Whether ``model`` (or a member of an ensemble) holds OOD statistics, so that its
    ``scored`` gives OOD scores (:mod:`ser.inference.ood`)."""
    if isinstance(model, Ensemble):
        return any(has_ood(m) for m in model.members)
    return getattr(model, "ood", None) is not None


def shortest_clip(
    model: EmotionModel | ExportedModel | Ensemble, seconds: float, what: str
) -> float:
    """Refuse windows of ``seconds`` too short for the model's net, saying the minimum; return that
    minimum (s; 0 for a TorchScript export, whose net is compiled code).

    Args:
        what: the option that set ``seconds``, for the error (e.g. ``--window``).
    """
    if isinstance(model, Ensemble):
        return max(shortest_clip(m, seconds, what) for m in model.members)
    if isinstance(model, EmotionModel):
        return model.pipeline.check_duration(model.net, seconds, what)
    return 0.0


def model_info(model: EmotionModel | ExportedModel | Ensemble) -> dict:
    """What an exported model needs beside its weights (written as ``classes.json``): its classes,
    sample rate, the noise reduction applied to whole recordings (a device gate is inside) and,
    when it has them, the OOD statistics with the front-end's spec that computes their features."""
    denoise = model.decode_denoise
    info = {
        "class_names": list(model.class_names),
        "sample_rate": int(model.sample_rate),
        "denoise": None if denoise is None else asdict(denoise),
    }
    if isinstance(model, EmotionModel) and model.ood is not None:
        info[OOD_KEY] = {**model.ood.to_spec(), "pipeline": model.pipeline.spec}
    return info


def read_weights(path: Path, what: str = "", encoder_weights: Path | None = None
                 ) -> tuple[dict, dict[str, torch.Tensor]]:  # fmt: skip
    """A training checkpoint's spec and its net's weights (keys without the ``net.`` prefix).

    Args:
        what: how errors name the file (default: its path).
        encoder_weights: the front-end's weights file the user named (:func:`load_model`).
    """
    checkpoint = read_checkpoint(path, what or str(path))
    spec = read_spec(checkpoint, what or str(path), path.parent, encoder_weights)
    prefix = "net."
    weights = {
        k[len(prefix) :]: v
        for k, v in checkpoint.get("state_dict", {}).items()
        if k.startswith(prefix)
    }
    return spec, weights


def build_model(spec: dict, weights: dict[str, torch.Tensor], what: str) -> EmotionModel:
    """:class:`EmotionModel` from a checked spec (:func:`ser.spec.read_spec`) and the net's weights.

    Args:
        what: how errors name the source (the checkpoint or model folder).
    """
    try:
        pipeline = FeaturePipeline.from_spec(spec["pipeline"], spec["sample_rate"])
    except (SERError, TypeError, ValueError) as err:  # the front-end's or denoise's own check
        raise SERError(f"{what}: pipeline: {first_line(err)}") from None
    try:
        with architecture_only():  # a net's pretrained parts are in `weights`, not read from files
            net = build_net(
                spec["net"], len(spec["class_names"]), spec["n_features"], spec["sample_rate"]
            )
    except SERError as err:
        raise SERError(f"{what}: net: {err}") from None
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise SERError(
            f"{what}: the weights do not fit the net {spec['net']['class_path']}: {err}"
        ) from None
    check_finite(weights, what)
    temperature = spec.get("temperature", 1.0)
    ood = OODStats.from_spec(spec)
    model = EmotionModel(pipeline, net, spec["class_names"], temperature, ood).eval()
    model.spec = spec  # what the data must match for a test split (ser explain --test)
    return model


def load_checkpoint(path: Path, what: str = "", encoder_weights: Path | None = None
                    ) -> EmotionModel:  # fmt: skip
    """Rebuild :class:`EmotionModel` from a training checkpoint's spec and weights, with its
    temperature (1.0 when it has none: trained before calibration or with ``--calibrate false``).

    Args:
        what: how errors name the file (default: its path).
        encoder_weights: the front-end's weights file the user named (:func:`load_model`).
    """
    return build_model(*read_weights(path, what, encoder_weights), what or str(path))


def load_folder(folder: Path, what: str = "", encoder_weights: Path | None = None
                ) -> EmotionModel:  # fmt: skip
    """Rebuild :class:`EmotionModel` from a model folder (``ser export --format hub``): the spec
    from ``config.json``, the weights from ``model.safetensors``; neither pickle nor Lightning."""
    what = what or str(folder)
    config, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config, weights):
        if not path.is_file():
            raise SERError(
                f"{what}: a folder without {path.name}; give a checkpoint, a model.ts or a "
                "folder written by `ser export --format hub`"
            )
    spec = read_spec(
        {SPEC_KEY: read_json(config, f"{what}: {CONFIG_FILE}")}, what, folder, encoder_weights
    )
    tensors = load_tensors(weights, f"{what}: {WEIGHTS_FILE}")
    return build_model(spec, tensors, what)


def read_json(path: Path, what: str) -> object:
    """A JSON file a model came with (UTF-8); one clear error when it is not."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise SERError(
            f"{what}: not valid UTF-8 JSON ({first_line(err)}); export it again"
        ) from None


def load_exported(path: Path, what: str = "", encoder_weights: Path | None = None
                  ) -> ExportedModel:  # fmt: skip
    """Load a TorchScript export and its class names (inside it, or ``classes.json`` beside it),
    checked as a model file's spec is (:func:`ser.spec.check_info`).

    TorchScript holds compiled TorchScript code (not Python), run by torch's interpreter; its
    archive is read by torch's own unpickler, which builds no Python object it is not made for.
    """
    what = what or str(path)
    extra = {CLASSES_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated, still supported
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:  # a damaged or foreign archive
        raise SERError(
            f"{what}: not a TorchScript export torch can read ({type(err).__name__}: "
            f"{first_line(err)}); export it again with `ser export`"
        ) from None
    if extra[CLASSES_FILE]:
        try:
            info = json.loads(extra[CLASSES_FILE])
        except (json.JSONDecodeError, RecursionError) as err:
            raise SERError(f"{what}: its {CLASSES_FILE} is not valid JSON ({err})") from None
        where = f"{what}: {CLASSES_FILE}"
    elif (path.parent / CLASSES_FILE).is_file():
        where = f"{path.parent / CLASSES_FILE} (beside {what})"
        info = read_json(path.parent / CLASSES_FILE, where)
    else:
        raise SERError(
            f"{what}: no {CLASSES_FILE} inside it or beside it; export it again with `ser export`"
        )
    info = check_info(info, where)
    try:
        denoise = None if info.get("denoise") is None else Denoise(**info["denoise"])
    except (SERError, TypeError, ValueError) as err:
        raise SERError(f"{where}: denoise: {first_line(err)}") from None
    ood, ood_pipeline = None, None
    if info.get(OOD_KEY) is not None:
        entry = dict(info[OOD_KEY])
        pipeline = check_pipeline(
            entry.pop("pipeline", None), where, f"{OOD_KEY}.pipeline", path.parent, encoder_weights
        )
        ood_pipeline = FeaturePipeline.from_spec(pipeline, info["sample_rate"])
        ood = OODStats.from_spec({OOD_KEY: entry})
    return ExportedModel(
        module, info["class_names"], info["sample_rate"], denoise, ood, ood_pipeline
    ).eval()


def load_model(path: str | Path, what: str = "", encoder_weights: str | Path | None = None
               ) -> EmotionModel | ExportedModel:  # fmt: skip
    """Load a training checkpoint (``.ckpt``), a TorchScript export (``model.ts``) or a model
    folder (``ser export --format hub``) for inference.

    Args:
        path: the file or folder (as the user gave it: ``~`` is expanded).
        what: how errors name it (default: its path), e.g. with its place in an ensemble.
        encoder_weights: the front-end encoder's weights file the user named on the command line
            (``--encoder-weights``): read wherever it is, in place of the one the model file
            names (which may only point inside the model's own folder); still hash-checked.

    Raises:
        SERError: the path is missing, is none of these, or says something this ser refuses
            (:func:`ser.spec.check_spec`).
    """
    path = Path(path).expanduser()
    what = what or str(path)
    weights = given_weights(encoder_weights)
    if path.is_dir():
        return load_folder(path, what, weights)
    if not path.is_file():
        raise SERError(f"{what}: no such checkpoint or exported model")
    if is_torchscript(path):
        return load_exported(path, what, weights)
    return load_checkpoint(path, what, weights)


def add_encoder_weights(parser) -> None:
    """The ``--encoder-weights FILE`` option of the commands that load a model."""
    parser.add_argument(
        "--encoder-weights", metavar="FILE", default=None,
        help="the pretrained encoder's weights file (a model with a SpeechEncoder front-end) "
        "wherever it is: a model file may name files inside its own folder only; still checked "
        "against the hash the model records",
    )  # fmt: skip


def given_weights(encoder_weights: str | Path | None) -> Path | None:
    """The ``--encoder-weights`` file as a path, refused when it is not a file."""
    if encoder_weights is None:
        return None
    path = Path(encoder_weights).expanduser().absolute()
    if not path.is_file():
        raise SERError(f"--encoder-weights {encoder_weights}: no such file")
    return path


def member_name(path: str | Path, index: int, count: int) -> str:
    """How errors name model ``index`` (from 1) of ``count`` given together."""
    return str(path) if count == 1 else f"{path} (ensemble model {index} of {count})"


def load_models(paths: list[str | Path], encoder_weights: str | Path | None = None
                ) -> EmotionModel | ExportedModel | Ensemble:  # fmt: skip
    """:func:`load_model` of one path, or the :class:`Ensemble` of several (errors name the
    member); ``encoder_weights`` goes to each."""
    models = [
        load_model(p, member_name(p, i, len(paths)), encoder_weights)
        for i, p in enumerate(paths, start=1)
    ]
    return models[0] if len(models) == 1 else Ensemble(models)
