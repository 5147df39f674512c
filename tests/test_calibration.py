"""Calibration: ECE in the metrics and the report, temperature scaling fitted after fit and carried
by the checkpoint through ``ser test``, ``ser predict`` and exports; TensorBoard's HParams entry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.functional.classification import multiclass_calibration_error

from ser.calibration import TEMPERATURE_RANGE, fit_temperature
from ser.cli import main
from ser.errors import SERError
from ser.inference import load_model, predict_files
from ser.inference.export import example_waveform, export
from ser.inference.ood import OOD_KEY
from ser.spec import SPEC_KEY

from .helpers import CLASSES, figures_of_predictions, fit, write_ravdess


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def overconfident(n: int = 2000, n_classes: int = 4, seed: int = 0):
    """Logits of a toy model right 60 % of the time, but sure of itself (top class ~0.99)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(n_classes, (n,), generator=generator)
    wrong = torch.randint(1, n_classes, (n,), generator=generator)
    right = torch.rand(n, generator=generator) < 0.6
    predicted = torch.where(right, labels, (labels + wrong) % n_classes)
    logits = torch.randn(n, n_classes, generator=generator)
    logits[torch.arange(n), predicted] += 6.0
    return logits, labels


def test_temperature_lowers_the_ece_of_an_overconfident_model_and_keeps_its_answers():
    logits, labels = overconfident()
    temperature = fit_temperature(logits[:1000], labels[:1000])  # "validation" half
    assert temperature > 1.5  # softened
    test_logits, test_labels = logits[1000:], labels[1000:]
    before = multiclass_calibration_error(test_logits.softmax(-1), test_labels, 4)
    after = multiclass_calibration_error((test_logits / temperature).softmax(-1), test_labels, 4)
    assert before > 0.3 and after < 0.05
    assert torch.equal((test_logits / temperature).argmax(-1), test_logits.argmax(-1))


def test_an_underconfident_model_is_sharpened_by_the_same_optimum():
    logits, labels = overconfident()
    softened = fit_temperature(logits / 20, labels)  # logits 20 times too small
    assert softened < 1
    assert softened == pytest.approx(fit_temperature(logits, labels) / 20, rel=1e-3)


def test_fitted_temperature_is_the_nll_optimum_within_the_temperature_range():
    logits, labels = overconfident()
    temperature = fit_temperature(logits, labels)
    grid = torch.linspace(1.0, 6.0, 501, dtype=torch.float64)  # steps of 0.01
    nll = torch.stack([F.cross_entropy(logits.double() / t, labels) for t in grid])
    assert temperature == pytest.approx(float(grid[nll.argmin()]), abs=0.01)
    # a degenerate validation split is held inside TEMPERATURE_RANGE, not at 0 or infinity
    low, high = TEMPERATURE_RANGE
    separable = F.one_hot(labels, 4).float() * 0.01  # every answer right: T -> 0
    assert fit_temperature(separable, labels) == low
    unrelated = torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(1)) * 5
    assert fit_temperature(unrelated, labels) == high  # answers unrelated to labels: T -> inf
    with pytest.raises(SERError, match="the validation split is empty"):
        fit_temperature(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A calibrated run (the default); its folder."""
    tmp = tmp_path_factory.mktemp("calibration")
    root = write_ravdess(tmp / "ravdess", clips_per_emotion=2, seconds=1.3)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("SER_CACHE_DIR", str(tmp / "cache"))
        fit(root, "--trainer.max_epochs", "2", "--data.emotions", f"[{', '.join(CLASSES)}]")
    return tmp / "lightning_logs" / "cnn2d" / "version_0"


def test_fit_calibrates_every_checkpoint_and_reports_ece(trained: Path):
    checkpoints = sorted((trained / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 2  # best and last
    temperatures = [torch.load(c, weights_only=True)[SPEC_KEY]["temperature"] for c in checkpoints]
    assert all(t > 0 and t != 1.0 for t in temperatures)
    for checkpoint in checkpoints:  # the OOD statistics are fitted in the same pass
        ood = load_model(checkpoint).ood
        assert ood.threshold > 0 and ood.accept == 0.95 and ood.n_clips > 1
        assert len(ood.mean) == 2 * load_model(checkpoint).pipeline.n_features
    metrics = json.loads((trained / "test" / "metrics.json").read_text())
    assert metrics["temperature"] == pytest.approx(temperatures[-1])  # last.ckpt is tested
    recomputed = figures_of_predictions(trained / "test" / "predictions.csv")
    assert recomputed["n_clips"] == metrics["n_clips"] and recomputed["ece"] > 0
    assert metrics["ece"] == pytest.approx(recomputed["ece"], abs=1e-4)  # probabilities to 6 places
    assert metrics["uar"] == pytest.approx(recomputed["uar"])
    assert (trained / "test" / "reliability_diagram.png").stat().st_size > 0
    # what --min-confidence buys, and the figures per gender (RAVDESS: odd actor male) and speaker
    assert [r["n_clips"] for r in metrics["risk_coverage"]][0] == metrics["n_clips"]
    assert (trained / "test" / "risk_coverage.png").stat().st_size > 0
    fairness = metrics["fairness"]
    assert set(fairness["gender"]["groups"]) == {"female", "male"}  # test actors 19 and 20
    assert set(fairness["speaker"]["groups"]) == {"19", "20"}
    assert fairness["gender"]["uar_gap"] == pytest.approx(
        abs(fairness["speaker"]["groups"]["19"]["uar"] - fairness["speaker"]["groups"]["20"]["uar"])
    )


def test_temperature_travels_from_checkpoint_to_test_predict_and_export(
    trained: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    checkpoint = trained / "checkpoints" / "last.ckpt"
    temperature = torch.load(checkpoint, weights_only=True)[SPEC_KEY]["temperature"]
    args = ["--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint),
            "--score", "recordings", "--window", "1.0", "--hop", "0.5"]  # fmt: skip
    main(["test", *args])
    report = tmp_path / "lightning_logs" / "cnn2d"
    tested = {r["path"]: r for r in read_csv(report / "version_0" / "test" / "predictions.csv")}
    model = load_model(checkpoint)
    assert model.temperature == pytest.approx(temperature)
    export(checkpoint, tmp_path / "export", ["torchscript"])
    exported = load_model(tmp_path / "export" / "model.ts")
    for loaded in (model, exported):
        for prediction in predict_files(loaded, list(tested), window_seconds=1.0, hop_seconds=0.5):
            row = tested[str(prediction.path)]
            expected = torch.tensor([float(row[c]) for c in CLASSES])
            assert torch.allclose(prediction.probabilities, expected, atol=1e-4), prediction.path
    # the export bakes the temperature in: its logits are the checkpoint net's divided by it
    wave = example_waveform(model.sample_rate, 1.0)
    with torch.inference_mode():
        raw = model.net(*model.pipeline(wave, torch.full((2,), wave.shape[1])))
        assert torch.allclose(exported(wave), raw / temperature, atol=1e-4)

    # --calibrate false: the same answers and UAR, other probabilities, temperature 1
    main(["test", *args, "--calibrate", "false"])
    off = report / "version_1" / "test"
    raw_rows = {r["path"]: r for r in read_csv(off / "predictions.csv")}
    assert json.loads((off / "metrics.json").read_text())["temperature"] == 1.0
    assert all(raw_rows[p]["predicted"] == tested[p]["predicted"] for p in tested)
    assert any(abs(float(raw_rows[p][c]) - float(tested[p][c])) > 1e-3
               for p in tested for c in CLASSES)  # fmt: skip


def test_tensorboard_has_hparams_and_per_class_recall_not_hp_metric(trained: Path):
    tags, plugins = set(), set()
    for events in trained.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
        try:
            plugins |= set(accumulator.PluginTagToContent("hparams"))
        except KeyError:
            pass
    assert "hp_metric" not in tags
    assert {"hp/val_uar_best", "hp/test_uar", "hp/test_ece", "val/ece", "test/ece"} <= tags
    assert {f"val_recall/{c}" for c in CLASSES} <= tags
    assert {"test_gender/uar/female", "test_gender/uar_gap", "test_speaker/accuracy/19"} <= tags
    assert "_hparams_/session_start_info" in plugins


def test_recalibrate_writes_the_temperature_into_an_older_checkpoint(
    trained: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    fitted = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    temperature = fitted[SPEC_KEY].pop("temperature")  # as a checkpoint from before calibration
    ood = fitted[SPEC_KEY].pop(OOD_KEY)
    checkpoint = tmp_path / "old.ckpt"
    torch.save(fitted, checkpoint)
    assert load_model(checkpoint).temperature == 1.0 and load_model(checkpoint).ood is None
    main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", str(checkpoint),
          "--recalibrate", "true"])  # fmt: skip
    # the validation split and weights of the fit: the temperature the fit found
    written = torch.load(checkpoint, weights_only=True)[SPEC_KEY]["temperature"]
    assert written == pytest.approx(temperature, rel=1e-4)
    assert load_model(checkpoint).temperature == pytest.approx(temperature, rel=1e-4)
    assert load_model(checkpoint).ood.threshold == pytest.approx(ood["threshold"], rel=1e-4)
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "test" / "metrics.json"
    assert json.loads(report.read_text())["temperature"] == pytest.approx(temperature, rel=1e-4)
