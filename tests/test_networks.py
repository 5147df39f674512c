"""The modern nets (ECAPA-TDNN, thin ResNet, Conformer): shapes, padding that never reaches a
clip's logits, gradients to every parameter, and exports that predict like the checkpoint.
Their configs run one batch in tests/test_configs.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import ser.models
from ser.errors import SERError
from ser.inference import load_model
from ser.inference.export import example_waveform, export
from ser.models.conformer import RotaryAttention, rotate
from ser.models.pooling import AttentivePool
from ser.transforms import FeaturePipeline

from .helpers import CLASSES, LOGMEL, RATE, save_checkpoint

#: Tiny versions: (class name, init_args)
NETS = {
    "ecapa": (
        "ECAPA",
        {"channels": 16, "scale": 4, "se_channels": 8, "attention_channels": 8, "embedding_dim": 8},
    ),  # fmt: skip
    "resnet18": ("ResNet", {"channels": [4, 8], "layers": [2, 2]}),
    "resnet34": ("ResNet", {"channels": [4, 4, 8, 8], "layers": [3, 4, 6, 3]}),
    "conformer": (
        "Conformer",
        {"d_model": 16, "n_heads": 2, "ffn_dim": 32, "n_layers": 2, "kernel_size": 5},
    ),  # fmt: skip
}
N_FEATURES = 32


def build(name: str, n_classes: int = 5, n_features: int = N_FEATURES, seed: int = 0) -> nn.Module:
    """A tiny net with random batch-norm statistics and a scaled classifier, so that its logits
    vary with the input and a leak of padding would show."""
    class_name, init_args = NETS[name]
    torch.manual_seed(seed)
    net = getattr(ser.models, class_name)(n_classes, n_features, RATE, **init_args)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, AttentivePool):  # tanh bent: the context is more than a shift
            module.score[0].weight.data *= 5
    [*_, last] = (m for m in net.modules() if isinstance(m, nn.Linear))
    last.weight.data *= 10
    return net.eval()


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("short", [37, 40])  # odd and even: each stride rounds differently
def test_shapes_and_a_clip_alone_equals_the_clip_in_a_padded_batch(name: str, short: int):
    net, long = build(name), 60
    x = torch.randn(3, N_FEATURES, long) * torch.tensor([0.5, 1.0, 2.0])[:, None, None]
    x[1, :, short:] = 100.0 * torch.randn(N_FEATURES, long - short)  # garbage in the padding
    with torch.no_grad():
        logits = net(x, torch.tensor([long, short, long]))
        alone = net(x[1:2, :, :short], torch.tensor([short]))
        unpadded = net(x[[0, 2]])  # lengths are optional: every clip full length
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    assert (logits[0] - logits[1]).abs().max() > 0.1  # logits vary, so equality means something
    torch.testing.assert_close(logits[1], alone[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[[0, 2]], unpadded, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NETS)
def test_gradients_reach_every_parameter(name: str):
    net = build(name).train()
    x, lengths = torch.randn(4, N_FEATURES, 50), torch.tensor([50, 31, 44, 50])
    nn.functional.cross_entropy(net(x, lengths), torch.tensor([0, 1, 2, 3])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().max() > 0]
    assert not missing


@pytest.mark.parametrize("name, encode", [("resnet34", "encode"), ("conformer", "subsample")])
def test_downsampled_lengths_are_the_frames_a_clip_alone_gets(name: str, encode: str):
    """The strides' length arithmetic: a clip alone has no padding, so all its frames are valid."""
    encode = getattr(build(name), encode)
    for frames in range(1, 26):
        with torch.no_grad():
            x, lengths = encode(torch.randn(1, N_FEATURES, frames), torch.tensor([frames]))
        assert lengths.tolist() == [x.shape[-1 if name.startswith("resnet") else 1]], frames


def test_resnet_layers_make_resnet18_or_resnet34():
    blocks = [type(b).__name__ for b in build("resnet34").blocks]
    assert blocks == ["BasicBlock"] * 16
    strides = [b.stride for b in build("resnet34").blocks]
    assert strides == [1] * 3 + [2, 1, 1, 1] + [2] + [1] * 5 + [2, 1, 1]
    assert len(ser.models.ResNet(4, 64, RATE).blocks) == 8  # the default: a thin ResNet-18


def test_rotary_positions_make_attention_depend_on_offsets_only():
    """Rotated queries and keys: the score of frames (i, j) is that of (i + s, j + s)."""
    torch.manual_seed(0)
    attention = RotaryAttention(16, 2)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        angles = torch.tensor([[i], [j]], dtype=torch.float32) * attention.inverse_frequencies
        cos, sin = angles.cos(), angles.sin()  # (2, 4)
        return (rotate(q, cos[0], sin[0]) * rotate(k, cos[1], sin[1])).sum()

    torch.testing.assert_close(score(3, 7), score(20, 24))
    torch.testing.assert_close(score(0, 0), (q * k).sum())
    assert (score(3, 7) - score(3, 4)).abs() > 1e-3  # offsets do matter


def write_net_checkpoint(path: Path, name: str) -> Path:
    """A checkpoint of the tiny net ``name`` on 32 log-mel bands, in ``ser fit``'s layout."""
    pipeline = {"frontend": LOGMEL, "denoise": None}
    n_features = FeaturePipeline.from_spec(pipeline, RATE).n_features
    class_name, init_args = NETS[name]
    net = build(name, len(CLASSES), n_features)
    return save_checkpoint(path, net, f"ser.models.{class_name}", init_args, pipeline, n_features)


#: ONNX exports of ECAPA and the Conformer take minutes (torch.export): those run with -m slow.
EXPORTS = [
    ("ecapa", "torchscript"),
    ("resnet18", "torchscript"),
    ("conformer", "torchscript"),
    ("resnet18", "onnx"),
    pytest.param("ecapa", "onnx", marks=pytest.mark.slow),
    pytest.param("conformer", "onnx", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, fmt", EXPORTS)
def test_exports_predict_like_the_checkpoint(name: str, fmt: str, tmp_path: Path):
    if fmt == "onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    checkpoint = write_net_checkpoint(tmp_path / f"{name}.ckpt", name)
    figures = export(checkpoint, tmp_path / "out", [fmt])
    assert max(figures[fmt]) < 1e-4  # export's own check, at the traced length and another
    model = load_model(checkpoint)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            run = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    else:
        session = onnxruntime.InferenceSession(
            str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        run = lambda w: torch.from_numpy(session.run(None, {"waveform": w.numpy()})[0])  # noqa: E731
    for seconds, batch_size in [(1.7, 3), (0.4, 1)]:  # lengths the export was not traced on
        waveform = example_waveform(RATE, seconds, batch_size, seed=5)
        with torch.inference_mode():
            expected, got = model(waveform), run(waveform)
        assert expected.shape == (batch_size, len(CLASSES)) and expected.std() > 0.1
        assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize(
    "build_net, message",
    [
        (lambda: ser.models.ECAPA(4, 32, RATE, channels=20, scale=8),
         "ECAPA: channels=20 must be a multiple of scale=8"),
        (lambda: ser.models.ECAPA(4, 32, RATE, dilations=[]), "ECAPA: dilations needs at least one block"),
        (lambda: ser.models.ResNet(4, 32, RATE, channels=[4, 8], layers=[2, 2, 2]),
         "one entry per stage"),
        (lambda: ser.models.ResNet(4, 32, RATE, dropout=1.0), r"ResNet: dropout=1.0 must be in"),
        (lambda: ser.models.Conformer(4, 32, RATE, d_model=20, n_heads=4),
         "must split into n_heads=4 heads of an even width"),
        (lambda: ser.models.Conformer(4, 6, RATE), "at least 7 feature bins, the front-end gives 6"),
        (lambda: ser.models.Conformer(4, 32, RATE, kernel_size=4), "kernel_size=4 must be odd"),
    ],
)  # fmt: skip
def test_net_settings_out_of_range_are_one_clear_error(build_net, message):
    with pytest.raises(SERError, match=message):
        build_net()
