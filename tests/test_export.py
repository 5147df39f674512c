"""``ser export``: TorchScript and ONNX of the whole chain agree with the checkpoint."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.errors import SERError
from ser.inference import ExportedModel, load_model, predict_files
from ser.inference.export import example_waveform, export, main

from .helpers import (
    CLASSES,
    MFCC,
    RATE,
    noise,
    run_without_lightning,
    save_checkpoint,
    write_checkpoint,
)

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))


def logits(model, waveform: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(waveform)


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny checkpoint and its export folder, through the command line (both formats if possible)."""
    folder = tmp_path_factory.mktemp("export")
    checkpoint = write_checkpoint(folder / "tiny.ckpt")
    main([str(checkpoint), "--output", str(folder / "out")])
    return checkpoint, folder / "out"


@pytest.mark.parametrize(("seconds", "batch_size"), [(3.0, 2), (4.7, 1), (1.1, 3)])
def test_torchscript_matches_checkpoint(exported, seconds: float, batch_size: int):
    checkpoint, out = exported
    model, scripted = load_model(checkpoint), load_torchscript(out / "model.ts")
    waveform = example_waveform(RATE, seconds, batch_size, seed=7)
    expected = logits(model, waveform)
    assert expected.std() > 0.1  # logits that vary, so agreement means something
    got = logits(scripted, waveform)  # the export takes the waveform only
    assert got.shape == (batch_size, len(CLASSES))
    assert (got - expected).abs().max() < 1e-4


def test_mfcc_front_end_exports_too(tmp_path: Path):
    checkpoint = write_checkpoint(tmp_path / "mfcc.ckpt", frontend=MFCC)
    figures = export(checkpoint, tmp_path / "out", ["torchscript"])
    assert max(figures["torchscript"]) < 1e-4 and not (tmp_path / "out" / "model.onnx").exists()
    model, scripted = load_model(checkpoint), load_torchscript(tmp_path / "out" / "model.ts")
    waveform = example_waveform(RATE, 2.3, 2, seed=3)
    assert (logits(scripted, waveform) - logits(model, waveform)).abs().max() < 1e-4


def test_onnx_matches_checkpoint(exported):
    if not HAS_ONNX:
        pytest.skip("onnx/onnxscript not installed (pip install 'ser[export]')")
    onnxruntime = pytest.importorskip("onnxruntime")
    checkpoint, out = exported
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    model = load_model(checkpoint)
    for seconds, batch_size in [(3.0, 2), (4.7, 1), (1.1, 3)]:
        waveform = example_waveform(RATE, seconds, batch_size, seed=11)
        got = torch.from_numpy(session.run(None, {"waveform": waveform.numpy()})[0])
        assert got.shape == (batch_size, len(CLASSES))
        assert (got - logits(model, waveform)).abs().max() < 1e-4
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(metadata["classes.json"]) == {
        "class_names": CLASSES,
        "sample_rate": RATE,
        "denoise": None,
    }


def test_classes_json_beside_the_export(exported):
    _, out = exported
    info = json.loads((out / "classes.json").read_text())
    assert info == {"class_names": CLASSES, "sample_rate": RATE, "denoise": None}


def test_predict_with_export_matches_checkpoint_without_lightning(exported, tmp_path: Path):
    checkpoint, out = exported
    paths = [tmp_path / "short.wav", tmp_path / "long.wav"]
    sf.write(paths[0], noise(1.2), RATE)
    sf.write(paths[1], noise(7.0, seed=2), 48000)
    scripted = load_model(out / "model.ts")
    assert isinstance(scripted, ExportedModel) and scripted.class_names == CLASSES
    from_export = predict_files(scripted, paths, window_seconds=3.0, batch_size=8)
    from_checkpoint = predict_files(load_model(checkpoint), paths, window_seconds=3.0, batch_size=8)
    for a, b in zip(from_export, from_checkpoint, strict=True):
        assert a.starts == b.starts
        assert torch.allclose(a.window_probabilities, b.window_probabilities, atol=1e-5)
    output = run_without_lightning(out / "model.ts", paths[1])
    assert "long.wav" in output and "HEAVY []" in output


def test_missing_onnx_is_a_clear_message(tmp_path: Path, monkeypatch, capsys):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnx" else real_find_spec(name, *a),
    )
    with pytest.raises(SERError, match="pip install onnx onnxscript"):
        export(checkpoint, tmp_path / "a", ["onnx"])
    figures = export(checkpoint, tmp_path / "b")  # both by default: TorchScript still written
    assert list(figures) == ["torchscript"] and (tmp_path / "b" / "model.ts").is_file()
    assert "pip install onnx onnxscript" in capsys.readouterr().err


def test_export_errors_exit_2(tmp_path: Path, capsys, exported):
    with pytest.raises(SystemExit) as exit_info:
        ser_main(["export", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "nope.ckpt: no such checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        ser_main(["export", str(exported[1] / "model.ts"), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "already an export" in capsys.readouterr().err


def write_lstm_checkpoint(path: Path) -> Path:
    """A checkpoint of a tiny bidirectional StackedLSTM on MFCC (3 frames a step, as
    ``configs/lstm.yaml``), in ``ser fit``'s layout."""
    from ser.models import StackedLSTM
    from ser.transforms import FeaturePipeline

    torch.manual_seed(0)
    pipeline = {"frontend": MFCC, "denoise": None}
    n_features = FeaturePipeline.from_spec(pipeline, RATE).n_features
    init_args = {
        "hidden_sizes": [16, 8], "dense": 8, "bidirectional": True, "pool": "mean_std", "stack": 3
    }  # fmt: skip
    net = StackedLSTM(len(CLASSES), n_features, RATE, **init_args)
    return save_checkpoint(path, net, "ser.models.StackedLSTM", init_args, pipeline, n_features)


def test_lstm_nets_export_to_torchscript_and_say_why_not_onnx(tmp_path: Path, capsys):
    checkpoint = write_lstm_checkpoint(tmp_path / "lstm.ckpt")
    figures = export(checkpoint, tmp_path / "both")  # both by default: ONNX skipped with a note
    assert list(figures) == ["torchscript"] and max(figures["torchscript"]) < 1e-4
    assert not (tmp_path / "both" / "model.onnx").exists()
    note = capsys.readouterr().err
    assert "skipping ONNX" in note and ("StackedLSTM" in note or not HAS_ONNX)
    # packed sequences: the TorchScript export must also agree on a length it was not traced on
    model, scripted = load_model(checkpoint), load_torchscript(tmp_path / "both" / "model.ts")
    waveform = example_waveform(RATE, 1.7, 3, seed=5)
    assert (logits(scripted, waveform) - logits(model, waveform)).abs().max() < 1e-4
    with pytest.raises(SERError, match="StackedLSTM" if HAS_ONNX else "pip install onnx"):
        export(checkpoint, tmp_path / "onnx", ["onnx"])
