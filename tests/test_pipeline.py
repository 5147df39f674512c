"""The feature pipeline: train and eval behaviour, its spec, and every consumer running it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import torch

from ser.baseline import pooled_features
from ser.data import RAVDESS
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.inference import load_model
from ser.models import CNN2D
from ser.models.pooling import mean_std_pool
from ser.spec import SPEC_KEY
from ser.transforms import MFCC, Augmentation, FeaturePipeline, LogMel
from ser.transforms.augment import FrequencyMask, Gain, Mixup
from ser.transforms.denoise import Denoise, SpectralGate

from .helpers import CLASSES, REPO, noise, write_checkpoint

RATE = 16000
SPLIT = SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"])


def batch(seconds=(0.6, 0.4), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch of noisy moving tones: ``(B, T), (B,)``."""
    waves = [torch.from_numpy(noise(s, seed=seed + i)) for i, s in enumerate(seconds)]
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.zeros(len(waves), int(lengths.max()))
    for row, w in zip(padded, waves, strict=True):
        row[: len(w)] = w
    return padded, lengths


def test_eval_is_gate_then_frontend_and_train_adds_augmentation():
    denoise = Denoise("stationary", where="device")
    augmentation = Augmentation(
        waveform=[Gain(p=1.0, gain_db=(6.0, 6.0))], features=[FrequencyMask(p=1.0, max_width=8)]
    )
    pipeline = FeaturePipeline(functools.partial(MFCC, n_mfcc=13), RATE, denoise, augmentation)
    wave, lengths = batch()
    expected = MFCC(RATE, n_mfcc=13)(SpectralGate(RATE, "stationary")(wave, lengths), lengths)
    features, feature_lengths = pipeline.eval()(wave, lengths)
    assert features.shape[1] == pipeline.n_features == 13
    assert torch.allclose(features, expected[0]) and torch.equal(feature_lengths, expected[1])
    torch.manual_seed(0)
    trained, _ = pipeline.train()(wave, lengths)
    assert trained.shape == features.shape and not torch.allclose(trained, features)


def test_mixup_only_while_training():
    pipeline = FeaturePipeline(LogMel, RATE, augmentation=Augmentation(mixup=Mixup(p=1.0)))
    wave, lengths = batch()
    labels = torch.tensor([0, 1])
    evaluated = pipeline.eval().process({"waveform": wave, "lengths": lengths, "label": labels}, 4)
    assert "target" not in evaluated
    trained = pipeline.train().process({"waveform": wave, "lengths": lengths, "label": labels}, 4)
    assert trained["target"].shape == (2, 4)
    assert torch.allclose(trained["target"].sum(-1), torch.ones(2))


def test_spec_rebuilds_the_same_eval_pipeline():
    pipeline = FeaturePipeline(
        functools.partial(LogMel, n_mels=32, hop_ms=16.0),
        RATE,
        Denoise("nonstationary", where="device"),
    )
    rebuilt = FeaturePipeline.from_spec(pipeline.spec, RATE)
    assert rebuilt.spec == pipeline.spec
    assert rebuilt.spec["frontend"] == {
        "class_path": "ser.transforms.frontends.LogMel",
        "init_args": {"n_mels": 32, "hop_ms": 16.0},
    }
    wave, lengths = batch()
    assert torch.equal(rebuilt(wave, lengths)[0], pipeline.eval()(wave, lengths)[0])


def test_spec_builds_only_ser_transforms():
    spec = {"frontend": {"class_path": "os.system", "init_args": {}}, "denoise": None}
    with pytest.raises(SERError, match="refusing to build 'os.system'"):
        FeaturePipeline.from_spec(spec, RATE)


def test_decode_time_noise_reduction_is_a_recording_step_not_a_batch_step():
    pipeline = FeaturePipeline(LogMel, RATE, Denoise("stationary", where="decode"))
    assert pipeline.gate is None
    wave = torch.from_numpy(noise(1.0))
    assert not torch.allclose(pipeline.recording(wave), wave)
    assert torch.equal(FeaturePipeline(LogMel, RATE).recording(wave), wave)


def test_datamodule_hook_and_baseline_run_the_pipeline_with_its_device_gate(ravdess_root: Path):
    gated = RAVDESS(
        root=str(ravdess_root), split=SPLIT, max_seconds=0.5, verify=False,
        denoise=Denoise("stationary", where="device"),
    )  # fmt: skip
    plain = RAVDESS(root=str(ravdess_root), split=SPLIT, max_seconds=0.5, verify=False)
    for dm in (gated, plain):
        dm.setup("fit")
    data = gated.datasets["test"]
    from ser.data.dataset import collate

    clips = collate([data[i] for i in range(len(data))])
    wave, lengths = clips["waveform"], clips["lengths"]
    gate = SpectralGate(RATE, "stationary")
    by_hand = LogMel(RATE)(gate(wave, lengths), lengths)
    hooked = gated.on_after_batch_transfer(dict(clips), 0)  # no trainer: the eval part
    assert torch.allclose(hooked["features"], by_hand[0])
    # ser baseline: the pooled statistics of the data's pipeline are those of gated features
    x, y = pooled_features(gated, "test", gated.pipeline.eval())
    assert torch.allclose(torch.from_numpy(x), mean_std_pool(*by_hand), atol=1e-5)
    x_plain, _ = pooled_features(plain, "test", plain.pipeline.eval())
    assert not torch.allclose(torch.from_numpy(x_plain), torch.from_numpy(x), atol=1e-3)
    assert y.tolist() == data.labels


def test_inference_runs_the_checkpoint_pipeline(tmp_path: Path):
    denoise = {"mode": "stationary", "prop_decrease": 1.0, "where": "device"}
    model = load_model(write_checkpoint(tmp_path / "gated.ckpt", denoise=denoise))
    assert isinstance(model.pipeline.gate, SpectralGate) and model.decode_denoise is None
    wave, lengths = batch((0.8, 0.8))
    # by hand from what write_checkpoint saved: the gate, LogMel(n_mels=32), the CNN2D's weights
    net = CNN2D(len(CLASSES), 32, RATE, channels=[4, 8], convs_per_block=1).eval()
    state = torch.load(tmp_path / "gated.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    gated = SpectralGate(RATE, "stationary", prop_decrease=1.0)(wave, lengths)
    with torch.inference_mode():
        expected = net(*LogMel(RATE, n_mels=32)(gated, lengths))  # (B, n_classes)
        plain = net(*LogMel(RATE, n_mels=32)(wave, lengths))
        assert not torch.allclose(expected, plain, atol=1e-3)  # the gate changes the logits
        torch.testing.assert_close(model(wave), expected, atol=1e-5, rtol=0)


def test_checkpoint_of_an_older_ser_is_one_clear_error(tmp_path: Path):
    path = write_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[SPEC_KEY] = {
        "class_names": ["a", "b"], "sample_rate": RATE, "n_features": 64,
        "frontend": {"features": "logmel"}, "denoise": None, "net": {},
    }  # fmt: skip
    torch.save(checkpoint, path)
    with pytest.raises(SERError, match="old.ckpt: written by an older ser .* retrain"):
        load_model(path)


def imports_of(path: Path) -> set[str]:
    """The ``ser`` modules a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ser"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ser")}
    return found


def test_no_import_cycles_in_the_package():
    files = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (REPO / "ser").rglob("*.py")
    }
    graph = {name: {m for m in imports_of(path) if m in files} for name, path in files.items()}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        for module in graph[name]:
            if module in stack:
                cycle = " -> ".join(stack[stack.index(module) :] + (module,))
                raise AssertionError(f"import cycle: {cycle}")
            visit(module, (*stack, module))

    for name in graph:
        visit(name, (name,))


def test_export_carries_the_device_gate_and_the_decode_denoise(tmp_path: Path):
    from ser.inference.export import export

    for where in ("device", "decode"):
        denoise = {"mode": "nonstationary", "prop_decrease": 0.8, "where": where}
        checkpoint = write_checkpoint(tmp_path / f"{where}.ckpt", denoise=denoise)
        export(checkpoint, tmp_path / where, ["torchscript"])
        exported, trained = load_model(tmp_path / where / "model.ts"), load_model(checkpoint)
        assert exported.decode_denoise == trained.decode_denoise
        assert (exported.decode_denoise is None) == (where == "device")
        wave = torch.from_numpy(noise(2.0))[None]
        with torch.inference_mode():
            assert torch.allclose(exported(wave), trained(wave), atol=1e-4)
            if where == "device":  # the gate is inside the export: without it, other logits
                ungated = trained.net(
                    *trained.pipeline.frontend(wave, torch.tensor([wave.shape[1]]))
                )
                assert not torch.allclose(exported(wave), ungated, atol=1e-3)


def test_pipeline_groups_read_from_yaml(ravdess_root: Path, tmp_path: Path):
    """Front-end, noise reduction and split as a user writes them in a data config."""
    from jsonargparse import ArgumentParser

    from ser.data.base import SERDataModule

    config = tmp_path / "data.yaml"
    config.write_text(
        "class_path: ser.data.RAVDESS\n"
        "init_args:\n"
        f"  root: {ravdess_root}\n"
        "  frontend: {class_path: ser.transforms.MFCC, init_args: {n_mfcc: 13}}\n"
        "  denoise: {mode: nonstationary, where: device}\n"
        "  split: {protocol: random, seed: 7}\n"
    )
    parser = ArgumentParser()
    parser.add_subclass_arguments(SERDataModule, "data")
    dm = parser.instantiate(parser.parse_args(["--data", str(config)])).data
    assert dm.n_features == 13 and isinstance(dm.pipeline.gate, SpectralGate)
    assert dm.pipeline.denoise == Denoise("nonstationary", where="device")
    assert dm.split == SplitSpec(protocol="random", seed=7)
