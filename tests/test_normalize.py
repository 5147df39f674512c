"""Feature normalisation by recording, speaker or corpus (ser.transforms.normalize)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.cli import main
from ser.data import RAVDESS
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.spec import SPEC_KEY
from ser.transforms import LogMel
from ser.transforms.normalize import Normalization

from .helpers import fit, write_ravdess

CLASSES = ["neutral", "happy", "sad", "angry"]


def padded(lengths: list[int], bins: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), bins, max(lengths), generator=torch.Generator().manual_seed(seed))
    x = x * torch.linspace(1, 4, bins)[:, None] + torch.arange(bins)[:, None]  # unequal bins
    lengths_t = torch.tensor(lengths)
    return x * (torch.arange(x.shape[-1]) < lengths_t[:, None])[:, None, :], lengths_t


def test_recording_level_gives_each_bin_mean_0_std_1_over_valid_frames_only():
    x, lengths = padded([30, 17])
    out = Normalization("recording")(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        valid = out[i, :, :n].numpy()
        np.testing.assert_allclose(valid.mean(axis=1), 0.0, atol=1e-5)
        np.testing.assert_allclose(valid.std(axis=1), 1.0, atol=1e-3)  # population std, as CMVN
        assert torch.all(out[i, :, n:] == 0)  # padding stays zero
    alone = Normalization("recording")(x[1:, :, :17], lengths[1:])
    torch.testing.assert_close(alone[0], out[1, :, :17])  # a clip alone = in a padded batch


def test_recording_level_removes_a_fixed_channel():
    """A recording channel that scales each frequency band (a microphone's response, a gain) adds
    a constant per band to a log-mel spectrogram: normalised per recording, it is gone."""
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([16000])
    frontend = LogMel(16000, n_mels=32, top_db=None, normalize=False)
    plain, frames = frontend(wave, lengths)
    louder, _ = frontend(3.0 * wave, lengths)
    assert (louder - plain).abs().mean() > 5  # +9.5 dB in every bin
    norm = Normalization("recording")
    torch.testing.assert_close(norm(louder, frames), norm(plain, frames), atol=1e-3, rtol=1e-3)


def test_each_level_groups_a_batch_by_its_own_key():
    # written against survivors of `python benchmarks/mutation.py normalize` (docs/testing.md)
    batch = {"speaker": ["a", "b"], "corpus": ["ravdess", "emodb"]}
    assert Normalization("recording").groups(batch) is None
    assert Normalization("speaker").groups(batch) == ["a", "b"]
    assert Normalization("corpus").groups(batch) == ["ravdess", "emodb"]


def test_speaker_level_uses_the_speakers_statistics_over_all_their_frames():
    x, lengths = padded([30, 17, 25], seed=2)
    norm = Normalization("speaker")
    norm.fit([(x[:2], lengths[:2], ["a", "a"]), (x[2:], lengths[2:], ["b"])])
    frames_a = torch.cat([x[0, :, :30], x[1, :, :17]], dim=1).double()  # (C, 47)
    mean_a, std_a = frames_a.mean(1), frames_a.std(1, unbiased=False)
    torch.testing.assert_close(norm.stats["a"][0], mean_a.float())
    torch.testing.assert_close(norm.stats["a"][1], std_a.float(), atol=1e-4, rtol=1e-4)
    out = norm(x, lengths, ["a", "a", "unknown"])
    expected = (x[1, :, :17] - mean_a[:, None].float()) / std_a[:, None].float()
    torch.testing.assert_close(out[1, :, :17], expected, atol=1e-4, rtol=1e-4)
    # speaker a's clips keep what sets them apart from each other
    assert out[1, :, :17].mean(1).abs().max() > 0.05
    # an unknown group: the statistics of every clip fitted (all 72 frames), not its own
    frames = torch.cat([x[0, :, :30], x[1, :, :17], x[2, :, :25]], dim=1).double()
    mean, std = frames.mean(1).float(), frames.std(1, unbiased=False).float()
    torch.testing.assert_close(norm.population[0], mean)
    expected = (x[2, :, :25] - mean[:, None]) / std[:, None]
    torch.testing.assert_close(out[2, :, :25], expected, atol=1e-4, rtol=1e-4)
    # no groups at all (ser predict on ungrouped files): the same, in any batch
    torch.testing.assert_close(norm(x[2:], lengths[2:])[0, :, :25], expected, atol=1e-4, rtol=1e-4)


def test_population_statistics_travel_in_the_spec_and_a_folder_keeps_them():
    """What a checkpoint stores rebuilds the same normalisation; fitting one folder's statistics
    at inference (population=False) leaves the population's as they were."""
    x, lengths = padded([30, 17, 25], seed=3)
    norm = Normalization("speaker")
    norm.fit([(x, lengths, ["a", "b", "b"])])
    spec = norm.to_spec()
    rebuilt = Normalization(**spec)
    torch.testing.assert_close(rebuilt(x, lengths), norm(x, lengths))
    before = norm.population[0].clone()
    norm.fit([(x[:1] * 5 + 3, lengths[:1], ["folder"])], population=False)
    torch.testing.assert_close(norm.population[0], before)
    assert list(norm.stats) == ["folder"]


@pytest.mark.parametrize(
    "population",
    [{"mean": [0.0, 1.0], "std": [1.0]}, {"mean": [0.0], "std": [0.0]},
     {"mean": [float("nan")], "std": [1.0]}, {"mean": "x", "std": [1.0]}, {"std": [1.0]}],
)  # fmt: skip
def test_a_damaged_stored_population_is_one_line(population):
    with pytest.raises(SERError, match="normalization.population must be"):
        Normalization("speaker", population=population)


def test_bad_level_is_one_line():
    with pytest.raises(
        SERError, match="--data.normalization 'utterance': one of recording, speaker, corpus"
    ):
        Normalization("utterance")


def test_data_fits_speaker_statistics_over_every_stage(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 15, 19))
    data = RAVDESS(root=str(root), split=SplitSpec(test_speakers=["19"], val_speakers=["15"]),
                   normalization="speaker", verify=False, emotions=CLASSES)  # fmt: skip
    data.setup("fit")
    stats = data.pipeline.normalization.stats
    assert sorted(stats) == ["01", "02", "15", "19"]  # the test speaker's own too
    stored = data.pipeline_spec["normalization"]
    assert (stored["level"], stored["scale"]) == ("speaker", True)
    # the population's statistics (every clip's) travel with the spec: ser predict's fallback
    torch.testing.assert_close(
        torch.tensor(stored["population"]["mean"]), data.pipeline.normalization.population[0]
    )
    assert len(stored["population"]["mean"]) == data.n_features
    corpus = RAVDESS(root=str(root), split=SplitSpec(test_speakers=["19"], val_speakers=["15"]),
                     normalization="corpus", verify=False, emotions=CLASSES)  # fmt: skip
    corpus.setup("fit")
    assert list(corpus.pipeline.normalization.stats) == [""]  # one corpus: one group


def test_normalised_model_tests_and_predicts_alike(tmp_path: Path, monkeypatch):
    """The checkpoint carries the normalisation; ``ser test --score recordings`` and
    ``ser predict`` normalise each recording's windows alike."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=1, seconds=1.3)
    fit(root, "--trainer.max_epochs", "1", "--data.emotions", f"[{', '.join(CLASSES)}]",
        "--data.normalization", "recording")  # fmt: skip
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    checkpoint = run / "checkpoints" / "last.ckpt"
    spec = torch.load(checkpoint, weights_only=True)[SPEC_KEY]
    assert spec["pipeline"]["normalization"] == {
        "level": "recording", "scale": True, "population": None}  # fmt: skip
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(checkpoint),
          "--score", "recordings", "--window", "1.0", "--hop", "0.5"])  # fmt: skip
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_1" / "test" / "predictions.csv"
    tested = {r["path"]: r for r in csv.DictReader(report.open())}
    ser_main(["predict", str(checkpoint), *tested, "--window", "1.0", "--hop", "0.5",
              "--output", str(tmp_path / "p.csv")])  # fmt: skip
    predicted = {r["file"]: r for r in csv.DictReader((tmp_path / "p.csv").open())
                 if r["window"] == "all"}  # fmt: skip
    assert predicted.keys() == tested.keys() and len(tested) == 8
    for path, row in tested.items():
        for c in CLASSES:
            assert float(row[c]) == pytest.approx(float(predicted[path][c]), abs=1e-4), path


def test_speaker_normalised_model_predicts_a_folder_as_ser_test_scores_its_speaker(
    tmp_path: Path, monkeypatch
):
    """``ser predict --group-by folder`` on one speaker's folder normalises by the statistics
    ``ser test`` computes for that speaker: the same probabilities; without grouping they differ."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=1, seconds=1.3)
    fit(root, "--trainer.max_epochs", "1", "--data.emotions", f"[{', '.join(CLASSES)}]",
        "--data.normalization", "speaker", "--test_after_fit", "false")  # fmt: skip
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    checkpoint = run / "checkpoints" / "last.ckpt"
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(checkpoint),
          "--score", "recordings", "--window", "1.0", "--hop", "0.5"])  # fmt: skip
    report = tmp_path / "lightning_logs" / "cnn2d" / "version_1" / "test" / "predictions.csv"
    tested = {r["path"]: r for r in csv.DictReader(report.open())}
    assert {Path(p).parent.name for p in tested} == {"Actor_19", "Actor_20"}
    for grouping, same in (("folder", True), ("none", False)):
        out = tmp_path / f"{grouping}.csv"
        ser_main(["predict", str(checkpoint), str(root / "Actor_19"), str(root / "Actor_20"),
                  "--window", "1.0", "--hop", "0.5", "--group-by", grouping,
                  "--output", str(out)])  # fmt: skip
        predicted = {r["file"]: r for r in csv.DictReader(out.open()) if r["window"] == "all"}
        assert predicted.keys() == tested.keys()
        gaps = [abs(float(tested[p][c]) - float(predicted[p][c])) for p in tested for c in CLASSES]
        assert (max(gaps) < 1e-4) == same, grouping
    # the OOD statistics describe the validation clips as ser predict sees them (their speaker
    # unknown: the population's statistics), not as normalised by their own speaker's
    from ser.inference import load_model
    from ser.inference.ood import OOD_KEY, feature_summary
    from ser.spec import SPEC_KEY

    model = load_model(checkpoint)
    stored = torch.tensor(torch.load(checkpoint, weights_only=True)[SPEC_KEY][OOD_KEY]["mean"])
    waves = [torch.from_numpy(sf.read(f, dtype="float32")[0])
             for a in ("15", "16") for f in sorted((root / f"Actor_{a}").iterdir())]  # fmt: skip
    crop = 8000  # validation's centre crops (--data.max_seconds 0.5)
    waves = [w[(len(w) - crop) // 2 :][:crop] for w in waves]
    with torch.no_grad():
        summaries = torch.cat([feature_summary(*model.run(w[None])[1:]) for w in waves])
    torch.testing.assert_close(summaries.mean(0), stored, atol=1e-3, rtol=1e-3)


def test_group_by_folder_needs_a_speaker_normalised_model(tmp_path: Path, monkeypatch):
    from .helpers import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(SERError, match="--group-by folder: the model normalises each recording"):
        from ser.inference.predict import main as predict_main

        predict_main([str(checkpoint), str(write_ravdess(tmp_path / "r")), "--group-by", "folder"])


@pytest.mark.parametrize("population", [False, True])
def test_normalised_model_exports_as_its_checkpoint_predicts(tmp_path: Path, population: bool):
    """TorchScript and ONNX carry the normalisation of a speaker-level model at inference: the
    stored population statistics, or (an older model without them) each window's own."""
    from ser.inference import load_model
    from ser.inference.export import example_waveform, export
    from ser.models import CNN2D

    from .helpers import LOGMEL, RATE, save_checkpoint

    level = "speaker"
    torch.manual_seed(0)
    net = CNN2D(4, 32, RATE, channels=[4, 8], convs_per_block=1)
    stored = {
        "mean": torch.linspace(-1, 1, 32).tolist(),
        "std": torch.linspace(0.5, 2, 32).tolist(),
    }
    pipeline = {"frontend": LOGMEL, "denoise": None, "normalization": {
        "level": level, "scale": True, "population": stored if population else None}}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", net.eval(), "ser.models.CNN2D",
                                 {"channels": [4, 8], "convs_per_block": 1}, pipeline, 32)  # fmt: skip
    formats = ["torchscript", "onnx"]
    figures = export(checkpoint, tmp_path / "out", formats)
    assert all(max(figures[f]) < 1e-4 for f in formats if f in figures), figures
    model = load_model(checkpoint)
    assert model.pipeline.normalization.level == level
    assert (model.pipeline.normalization.population is not None) == population
    scripted = torch.jit.load(str(tmp_path / "out" / "model.ts"))
    wave = example_waveform(RATE, 1.5, 2, seed=4)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(wave), model(wave), atol=1e-4, rtol=1e-4)


def test_a_recording_is_normalised_over_its_valid_frames_whatever_the_padding_holds():
    """The default level is the recording: padding never enters the statistics, a one-frame clip
    and a constant one give zeros (not NaN)."""
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0)) * 3 + 2  # (B, C, F)
    x[2] = 5.0  # constant features
    lengths = torch.tensor([6, 1, 6])
    garbage, zeros = x.clone(), x.clone()
    garbage[1, :, 1:], zeros[1, :, 1:] = 100.0, 0.0
    norm = Normalization()
    out = norm(garbage, lengths)
    torch.testing.assert_close(out, norm(zeros, lengths))
    assert torch.equal(out[1], torch.zeros(4, 6)) and torch.equal(out[2], torch.zeros(4, 6))
    valid = out[0]  # mean 0 and std 1 per bin over its 6 frames
    torch.testing.assert_close(valid.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_a_group_without_statistics_takes_the_population_or_else_its_own_frames():
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([5, 5])
    population = {"mean": [1.0, 2.0, 3.0], "std": [2.0, 4.0, 8.0]}
    norm = Normalization("speaker", population=population)  # never fitted: only the population
    mean, std = torch.tensor(population["mean"]), torch.tensor(population["std"])
    expected = (x - mean[:, None]) / std[:, None]
    torch.testing.assert_close(norm(x, lengths, ["nobody", "somebody"]), expected)
    alone = Normalization("speaker")  # no population either: each clip by its own frames
    torch.testing.assert_close(
        alone(x, lengths, ["nobody", "somebody"]), Normalization("recording")(x, lengths)
    )
