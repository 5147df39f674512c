"""Pretrained speech encoders (wav2vec 2.0, HuBERT, WavLM), from two sources:

- a ``torchaudio.pipelines`` bundle, by name (``WAVLM_BASE_PLUS``): its weights are found where a
  connected machine's ``torch.hub`` download puts them, ``$TORCH_HOME/hub/checkpoints/<file>``
  (``~/.cache/torch`` without ``TORCH_HOME``), or given as a local file;
- a Hugging Face ``transformers`` model (``pip install 'ser[hf]'``): a folder written by
  ``save_pretrained`` / ``hf download --local-dir``, or a Hub id (``microsoft/wavlm-base-plus``)
  already in the local Hugging Face cache. It is converted to torchaudio's model
  (``torchaudio.models.wav2vec2.utils.import_huggingface_model``), so both sources run the same
  code from there on.

Files are checked before anything is asked to load them, so an offline machine gets one clear
error instead of a hanging download; nothing here downloads. The front-end
(:mod:`ser.transforms.encoders`) and the fine-tuned net (:mod:`ser.models.finetune`) both load
through :func:`load_encoder`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from ser.errors import SERError
from ser.safe import first_line, load_tensors

#: The bundles of ``torchaudio.pipelines`` that ``ser`` accepts (self-supervised, no ASR head).
BUNDLES = (
    "WAV2VEC2_BASE", "WAV2VEC2_LARGE", "WAV2VEC2_LARGE_LV60K", "WAV2VEC2_XLSR53", "HUBERT_BASE",
    "HUBERT_LARGE", "WAVLM_BASE", "WAVLM_BASE_PLUS", "WAVLM_LARGE",
)  # fmt: skip
#: Where torchaudio fetches the files from (``torchaudio.pipelines._wav2vec2.utils``).
URL = "https://download.pytorch.org/torchaudio/models/{}"


#: Weights files of a Hugging Face model folder, in the order ``from_pretrained`` prefers them.
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: Hugging Face model classes that torchaudio converts (its ``import_huggingface_model``).
HF_CLASSES = ("Wav2Vec2Model", "HubertModel", "WavLMModel")


def is_hugging_face(name: str) -> bool:
    """Whether encoder ``name`` is a Hugging Face model (a folder or a Hub id ``org/model``)
    rather than a torchaudio bundle name."""
    return name not in BUNDLES and ("/" in name or Path(name).expanduser().is_dir())


def bundle_of(name: str):
    """The ``torchaudio.pipelines`` bundle called ``name``; SERError for any other name."""
    if name not in BUNDLES:
        raise SERError(
            f"unknown encoder bundle {name!r}; choose one of {', '.join(BUNDLES)}, or give a "
            "Hugging Face model folder or Hub id (e.g. microsoft/wavlm-base-plus)"
        )
    return getattr(torchaudio.pipelines, name)


def hf_folder(name: str) -> Path:
    """The local folder of Hugging Face model ``name``: the folder itself, or the Hub id's
    snapshot in the local Hugging Face cache (``$HF_HOME/hub``, what ``from_pretrained`` and
    ``hf download`` fill on a connected machine).

    Raises:
        SERError: ``transformers`` is not installed, or the model is not on this machine.
    """
    if importlib.util.find_spec("transformers") is None:
        raise SERError(
            f"encoder {name}: Hugging Face models need the transformers package: "
            "pip install 'ser[hf]' (or pip install transformers)"
        )
    folder = Path(name).expanduser()
    if folder.is_file():
        raise SERError(
            f"encoder {name} is a file: give a bundle name (e.g. WAVLM_BASE_PLUS) with the file "
            "as its weights (--data.frontend.weights FILE), or a Hugging Face model folder"
        )
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(name, local_files_only=True))
        except Exception:  # not in the cache (or not a valid id): nothing is downloaded here
            raise SERError(
                f"no local copy of Hugging Face model {name}: on a connected machine run "
                f"`hf download {name} --local-dir DIR` (or load it once with transformers), "
                "copy DIR to this machine and give its path as the encoder "
                "(e.g. --data.frontend.bundle DIR)"
            ) from None
    if not (folder / "config.json").is_file():
        raise SERError(f"{folder}: not a Hugging Face model folder (no config.json)")
    return folder


def hf_config(name: str) -> dict:
    """``config.json`` of Hugging Face model ``name``, with ``preprocessor_config.json``'s
    settings (sampling rate, waveform normalisation) under ``"preprocessor"`` (read once per
    process and version of the files)."""
    folder = hf_folder(name)
    versions = tuple(
        (folder / f).stat().st_mtime_ns if (folder / f).is_file() else 0
        for f in ("config.json", "preprocessor_config.json")
    )
    return _read_hf_config(str(folder), versions)


@functools.cache
def _read_hf_config(folder: str, versions: tuple[int, int]) -> dict:
    config = json.loads((Path(folder) / "config.json").read_text())
    preprocessor = Path(folder) / "preprocessor_config.json"
    config["preprocessor"] = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
    return config


def file_name(name: str) -> str:
    """The weights file name of bundle ``name`` (as torch.hub stores it), e.g.
    ``wavlm_base_plus.pth``."""
    return Path(bundle_of(name)._path).name


def hub_file(name: str) -> Path:
    """Where ``torch.hub`` keeps bundle ``name``'s weights: ``<torch.hub.get_dir()>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name(name)


def weights_file(name: str, weights: str | Path | None = None) -> Path:
    """The weights file of bundle ``name``: ``weights`` if given, else the torch.hub one.

    Raises:
        SERError: the file is not there; the message says what to fetch from where, and where
            to put it.
    """
    if is_hugging_face(name):
        folder = hf_folder(name)
        for candidate in HF_WEIGHTS:
            if (folder / candidate).is_file():
                return folder / candidate
        raise SERError(
            f"{folder}: no weights ({' or '.join(HF_WEIGHTS)}); download the model again "
            "(sharded weights are not read: save it with save_pretrained(max_shard_size='10GB'))"
        )
    bundle_of(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SERError(
                f"encoder weights file {path} (for {name}) does not exist; fetch "
                f"{URL.format(file_name(name))} on a connected machine and give its path"
            )
        return path
    path = hub_file(name)
    home = os.environ.get("TORCH_HOME")
    if home and Path(home).expanduser().exists() and not Path(home).expanduser().is_dir():
        raise SERError(
            f"TORCH_HOME {home}: not a folder; set it to the folder that holds "
            f"hub/checkpoints/{path.name}, or unset it (then ~/.cache/torch is used)"
        )
    if not path.is_file():
        setting = f"TORCH_HOME={home}" if home else "TORCH_HOME unset: ~/.cache/torch"
        raise SERError(
            f"no weights for encoder {name}: expected {path.name} in {path.parent} (torch.hub's "
            f"folder: $TORCH_HOME/hub/checkpoints, {setting}). On a connected machine fetch "
            f'{URL.format(file_name(name))} (or run python -c "import torchaudio; '
            f'torchaudio.pipelines.{name}.get_model()") and copy the file into that folder, or '
            "pass its path as the encoder's weights (e.g. --data.frontend.weights PATH)"
        )
    return path


@functools.cache
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def weights_hash(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256 (computed once per process and file version)."""
    st = path.stat()
    return _file_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)


#: Set inside :func:`architecture_only`.
_ARCHITECTURE_ONLY = False


@contextlib.contextmanager
def architecture_only() -> Iterator[None]:
    """Within it, :func:`load_encoder` builds a torchaudio bundle's architecture without reading
    its pretrained weights: for nets whose checkpoint holds all their weights (a fine-tuned
    encoder), so that using one does not need the pretrained file."""
    global _ARCHITECTURE_ONLY
    previous, _ARCHITECTURE_ONLY = _ARCHITECTURE_ONLY, True
    try:
        yield
    finally:
        _ARCHITECTURE_ONLY = previous


def load_hf_encoder(name: str) -> nn.Module:
    """Hugging Face model ``name`` (:func:`hf_folder`) as a ``torchaudio.models.Wav2Vec2Model``:
    ``AutoModel.from_pretrained(folder)`` (what a connected user runs, here from the local
    folder), converted by torchaudio's ``import_huggingface_model``."""
    import transformers
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a bar per load in `ser predict`'s output
    # never code from the folder (trust_remote_code), tensors only from its weights file
    safe = {"local_files_only": True, "trust_remote_code": False}
    # the weights are in the checkpoint (architecture only): the folder's config is enough
    folder = hf_folder(name) if _ARCHITECTURE_ONLY else weights_file(name).parent
    try:
        if _ARCHITECTURE_ONLY:
            config = transformers.AutoConfig.from_pretrained(folder, **safe)
            model = transformers.AutoModel.from_config(config, trust_remote_code=False)
        else:
            model = transformers.AutoModel.from_pretrained(folder, weights_only=True, **safe)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SERError(f"{folder}: transformers cannot load it ({first[:200]})") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    base = getattr(model, "wav2vec2", None) or getattr(model, "hubert", None) or model
    if type(base).__name__ not in HF_CLASSES:
        raise SERError(
            f"{folder}: a {type(base).__name__}; ser reads {', '.join(HF_CLASSES)} "
            "(wav2vec 2.0, HuBERT, WavLM)"
        )
    quiet = logging.getLogger(import_huggingface_model.__module__)  # "lm_head is not imported"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return import_huggingface_model(base).eval()
    finally:
        quiet.setLevel(level)


def bundle_architecture(name: str) -> nn.Module:
    """Bundle ``name``'s ``Wav2Vec2Model`` with random weights, built from the bundle's
    parameters as ``bundle.get_model()`` builds it."""
    bundle = bundle_of(name)
    factories = {
        "Wav2Vec2": torchaudio.models.wav2vec2_model,
        "WavLM": torchaudio.models.wavlm_model,
    }
    return factories[bundle._model_type](**bundle._params)


def load_encoder(name: str, weights: str | Path | None = None) -> nn.Module:
    """Encoder ``name``'s ``torchaudio.models.Wav2Vec2Model`` with its pretrained weights, in eval
    mode, without the waveform normalisation torchaudio wraps some bundles in (the callers
    normalise each clip over its valid samples: :func:`normalize_waveform`).

    A bundle is built as ``bundle.get_model()`` builds it, from the file torch.hub keeps (or the
    given one), read with ``weights_only=True`` (:func:`ser.safe.load_tensors`; torchaudio's own
    loader would unpickle anything); a Hugging Face model by :func:`load_hf_encoder`.
    """
    if is_hugging_face(name):
        return load_hf_encoder(name)
    model = bundle_architecture(name)
    if _ARCHITECTURE_ONLY:
        return model.eval()
    path = weights_file(name, weights)
    fetch = f"fetch {URL.format(file_name(name))} again"
    try:
        state = load_tensors(path, f"{path}: not {name}'s weights")
    except SERError as err:
        raise SERError(f"{err}; {fetch}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SERError(f"{path}: not {name}'s weights (not a state dict of tensors); {fetch}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise SERError(f"{path}: not {name}'s weights ({first_line(err)}); {fetch}") from None
    return model.eval()


def layer_count(encoder: nn.Module, name: str, layers: int | None) -> int:
    """``layers`` checked against the encoder's depth (``None``: all of them)."""
    depth = len(encoder.encoder.transformer.layers)
    if layers is not None and not 1 <= layers <= depth:
        raise SERError(f"layers ({layers}) must be between 1 and {depth} for encoder {name}")
    return depth if layers is None else int(layers)


def hidden_size(encoder: nn.Module) -> int:
    """Width of the encoder's hidden states."""
    return int(encoder.encoder.feature_projection.projection.out_features)


def normalizes_waveform(name: str) -> bool:
    """Whether encoder ``name`` was trained on waveforms normalised to mean 0, variance 1: the
    bundle's setting, or the Hugging Face model's ``do_normalize`` (without a preprocessor
    file: whether its feature extractor uses layer norm, as torchaudio's bundles do)."""
    if is_hugging_face(name):
        config = hf_config(name)
        return bool(
            config["preprocessor"].get("do_normalize", config.get("feat_extract_norm") == "layer")
        )
    return bool(bundle_of(name)._normalize_waveform)


def sample_rate_of(name: str) -> int:
    """The sample rate encoder ``name`` takes (Hz)."""
    if is_hugging_face(name):
        return int(hf_config(name)["preprocessor"].get("sampling_rate", 16000))
    return int(bundle_of(name).sample_rate)


def normalize_waveform(wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each clip of ``wave`` (B, T) at mean 0, variance 1 over its valid samples, padding zero:
    per clip what torchaudio's ``layer_norm`` over a single unpadded clip does."""
    mask = torch.arange(wave.shape[1], device=wave.device) < lengths[:, None]  # (B, T)
    count = lengths.clamp(min=1).to(wave.dtype)[:, None]  # (B, 1)
    mean = (wave * mask).sum(1, keepdim=True) / count
    var = (((wave - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wave - mean) / (var + 1e-5).sqrt() * mask


def extract_features(
    extractor: nn.Module, wave: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolutional feature extractor on a padded batch, each clip's frames as on the clip
    alone. Extractors with a group norm in their first layer (the base models) normalise each
    channel over the whole input, padding included: they run clip by clip, unpadded.

    Shapes: ``(B, T), (B,) -> (B, F, C), (B,)``.
    """
    group_norm = isinstance(extractor.conv_layers[0].layer_norm, nn.GroupNorm)
    exporting = torch.jit.is_tracing() or torch.compiler.is_exporting()  # exports: full clips
    if not group_norm or exporting or bool((lengths >= wave.shape[1]).all()):
        return extractor(wave, lengths)
    # clips of one length run as one unpadded batch (e.g. all the windows of a recording but
    # its last), each length once
    out: list[torch.Tensor | None] = [None] * len(wave)
    for n in lengths.unique().tolist():
        index = torch.nonzero(lengths == n).flatten()
        for i, frames in zip(index.tolist(), extractor(wave[index, :n], None)[0], strict=True):
            out[i] = frames  # (F_i, C)
    frames = torch.tensor([len(c) for c in out], device=wave.device)
    x = out[0].new_zeros(len(out), int(frames.max()), out[0].shape[1])
    for row, clip in zip(x, out, strict=True):
        row[: len(clip)] = clip
    return x, frames


def hidden_states(
    encoder: nn.Module, wave: torch.Tensor, lengths: torch.Tensor, n_layers: int, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of the first ``n_layers`` transformer layers of a torchaudio ``Wav2Vec2Model``
    on a padded batch, as its ``extract_features`` computes them, with padded frames masked out
    of attention for WavLM too (torchaudio's WavLM refuses ``lengths``).

    Shapes: ``(B, T), (B,) -> (B, n_layers, D, F), (B,)``.
    """
    if normalize:
        wave = normalize_waveform(wave, lengths)
    x, frames = extract_features(encoder.feature_extractor, wave, lengths)  # (B, F, C), (B,)
    x, attention_mask = encoder.encoder._preprocess(x, frames)  # padded frames zeroed
    transformer = encoder.encoder.transformer
    x = transformer._preprocess(x)  # (B, F, D) with the positional convolution
    padding = torch.arange(x.shape[1], device=x.device) >= frames[:, None]  # (B, F)
    padding = torch.zeros(padding.shape, dtype=x.dtype, device=x.device).masked_fill(
        padding, float("-inf")
    )  # additive, as WavLM's relative position bias it is added to
    wavlm = isinstance(transformer.layers[0].attention, WavLMSelfAttention)
    outputs, position_bias = [], None
    for layer in transformer.layers[:n_layers]:
        if wavlm:
            x, position_bias = layer(x, None, position_bias=position_bias, key_padding_mask=padding)
        else:
            x, position_bias = layer(x, attention_mask, position_bias=position_bias)
        outputs.append(x)
    features = torch.stack(outputs, dim=1).transpose(2, 3)  # (B, L, F, D) -> (B, L, D, F)
    return features, frames.long().clamp(min=1, max=features.shape[-1])
