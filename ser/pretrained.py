"""Pretrained speech encoders (wav2vec 2.0, HuBERT, WavLM) of ``torchaudio.pipelines``, by name.

Weights are found where a connected machine's ``torch.hub`` download puts them,
``$TORCH_HOME/hub/checkpoints/<file>`` (``~/.cache/torch`` without ``TORCH_HOME``), or given as a
local file. The file is checked before torchaudio is asked to load it, so an offline machine gets
one clear error instead of a hanging download. The front-end (:mod:`ser.transforms.encoders`)
and the fine-tuned net (:mod:`ser.models.finetune`) both load through :func:`load_encoder`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from ser.errors import SERError

#: The bundles of ``torchaudio.pipelines`` that ``ser`` accepts (self-supervised, no ASR head).
BUNDLES = (
    "WAV2VEC2_BASE", "WAV2VEC2_LARGE", "WAV2VEC2_LARGE_LV60K", "WAV2VEC2_XLSR53", "HUBERT_BASE",
    "HUBERT_LARGE", "WAVLM_BASE", "WAVLM_BASE_PLUS", "WAVLM_LARGE",
)  # fmt: skip
#: Where torchaudio fetches the files from (``torchaudio.pipelines._wav2vec2.utils``).
URL = "https://download.pytorch.org/torchaudio/models/{}"


def bundle_of(name: str):
    """The ``torchaudio.pipelines`` bundle called ``name``; SERError for any other name."""
    if name not in BUNDLES:
        raise SERError(f"unknown encoder bundle {name!r}; choose one of {', '.join(BUNDLES)}")
    return getattr(torchaudio.pipelines, name)


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
    if not path.is_file():
        raise SERError(
            f"no weights for encoder {name}: expected {path.name} in {path.parent} (torch.hub's "
            f"folder: $TORCH_HOME/hub/checkpoints). On a connected machine fetch "
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


def load_encoder(name: str, weights: str | Path | None = None) -> nn.Module:
    """Bundle ``name``'s ``torchaudio.models.Wav2Vec2Model`` with its pretrained weights, in eval
    mode, without the waveform normalisation torchaudio wraps some bundles in (the callers
    normalise each clip over its valid samples: :func:`normalize_waveform`).

    Loading is ``bundle.get_model()``, what a connected user runs; an explicit file is read by
    the same call from its folder.
    """
    path = weights_file(name, weights)
    bundle = bundle_of(name)
    kwargs = {"model_dir": str(path.parent), "file_name": path.name, "progress": False}
    try:
        model = bundle.get_model(dl_kwargs=kwargs)
    except Exception as err:  # unpickling and load_state_dict report damage with many classes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SERError(
            f"{path}: not {name}'s weights ({first[:200]}); fetch {URL.format(file_name(name))} "
            "again"
        ) from None
    return getattr(model, "model", model).eval()  # the normalising wrapper holds it as .model


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
    """Whether bundle ``name`` was trained on waveforms normalised to mean 0, variance 1."""
    return bool(bundle_of(name)._normalize_waveform)


def normalize_waveform(wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each clip of ``wave`` (B, T) at mean 0, variance 1 over its valid samples, padding zero:
    per clip what torchaudio's ``layer_norm`` over a single unpadded clip does."""
    mask = torch.arange(wave.shape[1], device=wave.device) < lengths[:, None]  # (B, T)
    count = lengths.clamp(min=1).to(wave.dtype)[:, None]  # (B, 1)
    mean = (wave * mask).sum(1, keepdim=True) / count
    var = (((wave - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wave - mean) / (var + 1e-5).sqrt() * mask


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
    x, frames = encoder.feature_extractor(wave, lengths)  # (B, F, C), (B,)
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
