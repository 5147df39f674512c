"""No command exits 0 with a number computed from an invalid model file or a NaN run: what a
model file says is checked once (:func:`ser.spec.check_spec`) for every command, a NaN loss stops
training, a metric of nothing is absent, and a test report states its temperature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.confusion import metrics_from_confusion
from ser.report import format_table
from ser.spec import SPEC_KEY

from .helpers import (
    CONFIG,
    FAST,
    RATE,
    RAVDESS_YAML,
    error_line,
    fit,
    noise,
    write_checkpoint,
    write_ravdess,
)


def edit_spec(path: Path, **changes) -> Path:
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[SPEC_KEY].update(changes)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, str]:
    """A one-epoch run on toy RAVDESS: its root, its best checkpoint and what fit printed."""
    tmp = tmp_path_factory.mktemp("run")
    root = write_ravdess(tmp / "ravdess")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        cli = fit(root, "--trainer.max_epochs", "1")
    return root, tmp / cli.trainer.checkpoint_callback.best_model_path, str(tmp)


def test_test_report_states_its_temperature(run, capsys):
    root, checkpoint, cwd = run
    metrics = json.loads((checkpoint.parents[1] / "test" / "metrics.json").read_text())
    temperature = torch.load(checkpoint, weights_only=True)[SPEC_KEY]["temperature"]
    assert metrics["temperature"] == pytest.approx(temperature)
    assert metrics["calibration"] in ("temperature scaling (validation)", "none (temperature 1)")


@pytest.mark.parametrize("temperature", [-1.0, 0.0, float("nan"), float("inf")])
def test_ser_test_refuses_a_bad_temperature_as_predict_does(
    run, tmp_path, capsys, monkeypatch, temperature
):
    root, checkpoint, _ = run
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.read_bytes())
    edit_spec(bad, temperature=temperature)
    monkeypatch.chdir(tmp_path)
    args = ["--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST]
    line = error_line(capsys, "test", *args, "--ckpt_path", str(bad))
    assert f"--ckpt_path {bad}: temperature is {temperature!r}" in line
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    line = error_line(capsys, "predict", str(bad), str(tmp_path / "clip.wav"))
    assert f"{bad}: temperature is {temperature!r}" in line


def test_errors_name_the_ensemble_member_and_the_field(tmp_path, capsys):
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    good = write_checkpoint(tmp_path / "good.ckpt")
    bad = edit_spec(write_checkpoint(tmp_path / "bad.ckpt", seed=1), temperature=0)
    line = error_line(
        capsys, "predict", str(good), str(tmp_path / "clip.wav"), "--ensemble", str(bad)
    )
    assert f"{bad} (ensemble model 2 of 2): temperature is 0" in line


#: OOD statistics as calibration writes them (2 feature numbers).
OOD = {"mean": [0.0, 1.0], "std": [1.0, 2.0], "threshold": 1.5, "accept": 0.95, "n_clips": 10}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"threshold": float("nan")}, "ood.threshold is nan"),
        ({"threshold": -1.0}, "ood.threshold is -1.0"),
        ({"std": [1.0, 0.0]}, "ood.std[1] is 0.0"),
        ({"mean": [0.0, float("inf")]}, "ood.mean[1] is inf"),
        ({"mean": [0.0]}, "ood.mean holds 1 numbers, ood.std 2"),
        ({"std": "wide"}, "ood.std is 'wide', not a list of numbers"),
        ({"accept": 1.5}, "ood.accept is 1.5"),
        ({"n_clips": 2.5}, "ood.n_clips is 2.5"),
        ({"script": "x"}, "ood.script is not an OOD setting"),
    ],
)
def test_ood_statistics_are_checked_with_the_rest_of_the_model_file(
    tmp_path, capsys, change, expected
):
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    good = write_checkpoint(tmp_path / "good.ckpt")
    bad = edit_spec(write_checkpoint(tmp_path / "bad.ckpt", seed=1), ood={**OOD, **change})
    clip = str(tmp_path / "clip.wav")
    line = error_line(capsys, "predict", str(good), clip, "--ensemble", str(bad))
    assert f"{bad} (ensemble model 2 of 2): {expected}" in line and "'ood' entry is damaged" in line
    line = error_line(capsys, "export", str(bad), "--output", str(tmp_path / "out"))
    assert f"{bad}: {expected}" in line
    folder = tmp_path / "folder"  # a model folder's config.json: the same check
    ser_main(["export", str(good), "-o", str(folder), "--format", "hub"])
    config = json.loads((folder / "config.json").read_text())
    config["ood"] = {**OOD, **change}
    (folder / "config.json").write_text(json.dumps(config))
    assert f"{folder}: {expected}" in error_line(capsys, "predict", str(folder), clip)


def test_ood_statistics_of_a_torchscript_export_are_checked(tmp_path, capsys):
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    ser_main(["export", str(write_checkpoint(tmp_path / "m.ckpt")), "-o", str(tmp_path / "ts"),
              "--format", "torchscript"])  # fmt: skip
    export = tmp_path / "ts" / "model.ts"
    info = json.loads((tmp_path / "ts" / "classes.json").read_text())
    pipeline = torch.load(tmp_path / "m.ckpt", weights_only=True)[SPEC_KEY]["pipeline"]
    info["ood"] = {**OOD, "threshold": float("nan"), "pipeline": pipeline}
    torch.jit.save(torch.jit.load(export), export, _extra_files={"classes.json": json.dumps(info)})
    line = error_line(capsys, "predict", str(export), str(tmp_path / "clip.wav"))
    assert f"{export}: classes.json: ood.threshold is nan" in line


def test_ser_test_refuses_damaged_ood_statistics_and_recalibrate_repairs_them(
    run, tmp_path, capsys, monkeypatch
):
    root, checkpoint, _ = run
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.read_bytes())
    edit_spec(bad, ood={**OOD, "threshold": float("nan")})
    monkeypatch.chdir(tmp_path)
    args = ["--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST]
    line = error_line(capsys, "test", *args, "--ckpt_path", str(bad))
    assert f"--ckpt_path {bad}: ood.threshold is nan" in line
    # the advice of the error works: the statistics are fitted again and written into the file
    ser_main(["test", *args, "--ckpt_path", str(bad), "--recalibrate", "true"])
    ood = torch.load(bad, weights_only=True)[SPEC_KEY]["ood"]
    assert np.isfinite(ood["threshold"]) and len(ood["mean"]) != len(OOD["mean"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sample_rate", 0, "sample_rate is 0"),
        ("sample_rate", 16000.5, "sample_rate is 16000.5"),
        ("class_names", ["happy"], "class_names ['happy'] must hold two or more distinct"),
        ("class_names", ["a", "a"], "class_names ['a', 'a'] must hold two or more distinct"),
        ("n_features", -3, "n_features is -3"),
        ("corpus", "evil.Corpus", "corpus 'evil.Corpus' must name ser's own corpus classes"),
    ],
)
def test_model_folder_fields_are_blamed_by_name(tmp_path, capsys, field, value, expected):
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    folder = tmp_path / "folder"
    ser_main(["export", str(write_checkpoint(tmp_path / "m.ckpt")), "-o", str(folder), "--format", "hub"])  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    line = error_line(capsys, "predict", str(folder), str(tmp_path / "clip.wav"))
    assert f"{folder}: {expected}" in line


def test_front_end_settings_are_blamed_on_the_front_end(tmp_path, capsys):
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    folder = tmp_path / "folder"
    ser_main(["export", str(write_checkpoint(tmp_path / "m.ckpt")), "-o", str(folder), "--format", "hub"])  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    config["pipeline"]["frontend"]["init_args"]["n_mles"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    line = error_line(capsys, "predict", str(folder), str(tmp_path / "clip.wav"))
    assert "pipeline.frontend.init_args.n_mles: LogMel takes no such setting" in line


def test_class_weights_all_zero_are_refused_at_start(tmp_path, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=1)
    monkeypatch.chdir(tmp_path)
    for weights in ("[0, 0, 0, 0]", "[1, .nan, 1, 1]"):
        line = error_line(capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML,
                          "--data.root", str(root), *FAST, "--model.class_weights", weights)  # fmt: skip
        assert "--model.class_weights" in line and "not all 0" in line


def test_a_nan_loss_stops_training_naming_step_files_and_cause(tmp_path, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 15, 16, 19, 20))
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML,
                      "--data.root", str(root), *FAST, "--model.optimizer.init_args.lr", "1e30",
                      "--trainer.max_epochs", "3")  # fmt: skip
    assert "training stopped: the loss is nan at step" in line
    assert "; files " in line and ".wav" in line
    assert "likely cause: the learning rate (1e+30) is too high" in line
    assert not list(tmp_path.rglob("metrics.json"))  # no report of a NaN run


def test_a_metric_of_nothing_is_absent_not_zero():
    names = ["a", "b", "c"]
    empty = metrics_from_confusion(np.zeros((3, 3), dtype=int), names)
    assert (empty["uar"], empty["accuracy"], empty["macro_f1"]) == (None, None, None)
    assert "UAR -  accuracy -  macro F1 -  (0 clips)" in format_table(empty)
    # class c has no clips and is never predicted: its recall, precision and F1 are absent
    some = metrics_from_confusion(np.array([[2, 1, 0], [0, 3, 0], [0, 0, 0]]), names)
    assert some["per_class"]["c"] == {"recall": None, "precision": None, "f1": None, "support": 0}
    assert some["uar"] == pytest.approx((2 / 3 + 1) / 2)
    # class b never predicted: recall 0 is a figure, precision is absent
    never = metrics_from_confusion(np.array([[2, 0, 0], [3, 0, 0], [0, 0, 1]]), names)
    assert never["per_class"]["b"]["recall"] == 0.0 and never["per_class"]["b"]["precision"] is None
