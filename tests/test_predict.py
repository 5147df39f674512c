"""Inference from a checkpoint: loading, windowing, batching, bad files, the ``ser predict`` CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.audio import read_audio, window_bounds
from ser.errors import SERError
from ser.inference import (
    EmotionModel,
    Ensemble,
    load_model,
    load_models,
    predict_files,
)
from ser.inference.predict import UNCERTAIN, Prediction, expand_paths, main, rows
from ser.transforms import LogMel
from ser.transforms.denoise import Denoise

from .helpers import CLASSES, MFCC, RATE, noise, run_without_lightning, write_checkpoint


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "tiny.ckpt")


def probabilities(model: EmotionModel, wave: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(wave[None]).softmax(-1)[0]


def test_load_model_rebuilds_the_chain(checkpoint: Path):
    model = load_model(checkpoint)
    assert isinstance(model, EmotionModel) and not model.training
    assert model.class_names == CLASSES and model.sample_rate == RATE
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert torch.equal(model.net.head[-1].weight, saved["net.head.4.weight"])
    frontend = torch.load(checkpoint, weights_only=True)["ser"]["pipeline"]["frontend"]
    assert frontend["class_path"] == "ser.transforms.LogMel"
    wave = torch.from_numpy(noise(1.5))[None]  # (1, T)
    with torch.inference_mode():
        features, lengths = LogMel(RATE, **frontend["init_args"])(
            wave, torch.tensor([wave.shape[1]])
        )
        assert torch.allclose(model(wave), model.net(features, lengths))


def test_missing_and_wrong_files_are_clear_errors(tmp_path: Path):
    with pytest.raises(SERError, match="nope.ckpt: no such checkpoint"):
        load_model(tmp_path / "nope.ckpt")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(SERError, match="notes.txt: not a ser checkpoint"):
        load_model(tmp_path / "notes.txt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(SERError, match="plain.ckpt: a checkpoint without the 'ser' entry"):
        load_model(tmp_path / "plain.ckpt")


def test_stereo_44k_file_is_mixed_down_and_resampled(checkpoint: Path, tmp_path: Path):
    path = tmp_path / "stereo.wav"
    sf.write(path, noise(2.0, rate=44100, channels=2), 44100)
    model = load_model(checkpoint)
    [prediction] = predict_files(model, [path])
    assert prediction.duration == pytest.approx(2.0, abs=1e-3)
    assert prediction.window_probabilities.shape == (1, len(CLASSES))
    expected = probabilities(model, read_audio(path, RATE))
    assert torch.allclose(prediction.probabilities, expected, atol=1e-6)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_long_file_is_split_into_windows(checkpoint: Path, tmp_path: Path):
    path = tmp_path / "long.flac"
    sf.write(path, noise(10.0), RATE)
    model = load_model(checkpoint)
    [prediction] = predict_files(model, [path], window_seconds=4.0, hop_seconds=2.0)
    assert prediction.starts == [0.0, 2.0, 4.0, 6.0] and prediction.ends == [4.0, 6.0, 8.0, 10.0]
    assert prediction.window_probabilities.shape == (4, len(CLASSES))
    assert torch.allclose(prediction.probabilities, prediction.window_probabilities.mean(0))
    wave = read_audio(path, RATE)
    for start, probs in zip(prediction.starts, prediction.window_probabilities, strict=True):
        window = wave[int(start * RATE) : int(start * RATE) + 4 * RATE]
        assert torch.allclose(probs, probabilities(model, window), atol=1e-5)
    assert not torch.allclose(
        prediction.window_probabilities[0], prediction.window_probabilities[3], atol=1e-4
    )
    # A window of 3 s with hop 3 s: 0, 3, 6 and a last one aligned to the end (7-10 s).
    [prediction] = predict_files(model, [path], window_seconds=3.0, hop_seconds=3.0)
    assert prediction.starts == [0.0, 3.0, 6.0, 7.0]


def test_window_bounds():
    assert window_bounds(100, 400, 200) == [(0, 100)]
    assert window_bounds(400, 400, 200) == [(0, 400)]
    assert window_bounds(800, 400, 200) == [(0, 400), (200, 600), (400, 800)]
    assert window_bounds(850, 400, 400) == [(0, 400), (400, 800), (450, 850)]


def test_results_do_not_depend_on_the_batch(checkpoint: Path, tmp_path: Path):
    paths = []
    for i, seconds in enumerate([0.7, 1.2, 2.9, 5.0, 0.1]):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], noise(seconds, seed=i), RATE)
    model = load_model(checkpoint)
    one = predict_files(model, paths, window_seconds=2.0, hop_seconds=1.0, batch_size=1)
    many = predict_files(model, paths, window_seconds=2.0, hop_seconds=1.0, batch_size=64)
    assert [p.path for p in many] == paths
    for a, b in zip(one, many, strict=True):  # 1.2 s is where padding would leak into the net
        assert torch.allclose(a.window_probabilities, b.window_probabilities, atol=1e-6)


def test_bad_files_are_skipped_with_a_warning(checkpoint: Path, tmp_path: Path, caplog):
    good, corrupt, empty = tmp_path / "good.wav", tmp_path / "corrupt.wav", tmp_path / "empty.wav"
    sf.write(good, noise(1.0), RATE)
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    sf.write(empty, np.zeros(0, dtype=np.float32), RATE)
    with caplog.at_level(logging.WARNING, logger="ser.inference"):
        predictions = predict_files(
            load_model(checkpoint), [corrupt, good, empty, tmp_path / "gone.wav"]
        )
    assert [p.path for p in predictions] == [good]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert str(corrupt) in warnings[0] and str(empty) in warnings[1] and "gone.wav" in warnings[2]


def test_cli_folder_to_json_and_csv(checkpoint: Path, tmp_path: Path, capsys):
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", noise(1.0), RATE)
    sf.write(folder / "sub" / "b.flac", noise(6.0, seed=1), 22050)
    (folder / "readme.txt").write_text("not audio")
    main([str(checkpoint), str(folder), "--top-k", "2", "--output", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert "a.wav" in out and "b.flac" in out and "readme" not in out and "top-2" in out
    table = json.loads((tmp_path / "out.json").read_text())
    assert [Path(r["file"]).name for r in table] == ["a.wav", "b.flac"]
    assert table[0]["emotion"] in CLASSES and sum(
        table[0]["probabilities"].values()
    ) == pytest.approx(1.0, abs=1e-4)
    main(
        [
            str(checkpoint),
            str(folder / "sub" / "*.flac"),
            "--per-window",
            "--output",
            str(tmp_path / "out.csv"),
        ]
    )
    lines = (tmp_path / "out.csv").read_text().splitlines()
    columns = ["file", "window", "start", "end", "emotion", "confidence", *CLASSES]
    assert lines[0] == ",".join([*columns, "ood_score", "unlike_training_data"])
    assert [line.split(",")[1] for line in lines[1:]] == ["all", "0", "1"]  # 6 s: windows 0-4, 2-6


def test_ensemble_averages_its_members_probabilities(checkpoint: Path, tmp_path: Path, capsys):
    other = write_checkpoint(tmp_path / "mfcc.ckpt", frontend=MFCC, seed=1)
    path = tmp_path / "a.wav"
    sf.write(path, noise(1.5), RATE)
    members = [load_model(checkpoint), load_model(other)]
    ensemble = load_models([checkpoint, other])
    assert isinstance(ensemble, Ensemble) and ensemble.class_names == CLASSES
    wave = read_audio(path, RATE)
    each = [probabilities(m, wave) for m in members]
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the members really differ
    [prediction] = predict_files(ensemble, [path])
    assert torch.allclose(prediction.probabilities, (each[0] + each[1]) / 2, atol=1e-6)

    main(
        [str(checkpoint), str(path), "--ensemble", str(other), "--output", str(tmp_path / "e.json")]
    )
    [row] = json.loads((tmp_path / "e.json").read_text())
    assert row["probabilities"] == pytest.approx(
        dict(zip(CLASSES, prediction.probabilities.tolist(), strict=True))
    )


def test_ensemble_members_must_share_classes_and_rate(checkpoint: Path, tmp_path: Path):
    other = write_checkpoint(tmp_path / "other.ckpt", seed=1)
    saved = torch.load(other, weights_only=True)
    saved["ser"]["class_names"] = CLASSES[::-1]
    torch.save(saved, other)
    with pytest.raises(SERError, match="model 2 has class_names"):
        load_models([checkpoint, other])
    saved["ser"]["class_names"], saved["ser"]["sample_rate"] = CLASSES, 8000
    torch.save(saved, other)
    with pytest.raises(SERError, match="model 2 has sample_rate 8000"):
        load_models([checkpoint, other])
    assert isinstance(load_models([checkpoint]), EmotionModel)  # one path: that model itself


def test_expand_paths_globs_and_folders(tmp_path: Path):
    for name in ["x/1.wav", "x/y/2.ogg", "x/3.txt", "z.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, noise(0.2), RATE, format="WAV")
    assert [p.name for p in expand_paths([str(tmp_path / "x")])] == ["1.wav", "2.ogg"]
    assert [p.name for p in expand_paths([str(tmp_path / "**" / "*.wav")])] == ["1.wav", "z.wav"]
    assert expand_paths([str(tmp_path / "z.wav"), str(tmp_path / "z.wav")]) == [tmp_path / "z.wav"]


def test_expand_paths_joins_every_argument_and_names_what_finds_nothing(tmp_path: Path, caplog):
    for name in ["a/1.wav", "b/2.wav", "c[1].wav", "d.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / name, noise(0.2), RATE, format="WAV")
    (tmp_path / "empty").mkdir()
    specs = [tmp_path / "a", tmp_path / "b", tmp_path / "c[1].wav", tmp_path / "*.wav",
             tmp_path / "empty", tmp_path / "*.flac", tmp_path / "missing.wav"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ser"):
        paths = expand_paths([str(s) for s in specs])
    assert [str(p.relative_to(tmp_path)) for p in paths] == [
        "a/1.wav", "b/2.wav", "c[1].wav", "d.wav", "missing.wav"]  # fmt: skip
    # a file whose name holds glob characters is that file; a missing one is reported when read
    assert [r.getMessage() for r in caplog.records] == [
        f"no audio files in folder {tmp_path / 'empty'}",
        f"no files match {tmp_path / '*.flac'}",
    ]


def test_rows_round_times_and_mark_answers_at_the_confidence_and_ood_bounds():
    prediction = Prediction(
        Path("r.wav"), duration=1.0, starts=[0.0, 1 / 3], ends=[2 / 3, 1.0],
        window_probabilities=torch.tensor([[0.5, 0.5], [0.75, 0.25]]),
        window_ood=torch.tensor([1.0, 1.5]),
    )  # fmt: skip
    table = rows([prediction], ["calm", "sad"], per_window=True, min_confidence=0.625)
    assert [r["window"] for r in table] == ["all", 0, 1]
    assert [(r["start"], r["end"]) for r in table] == [(0.0, 1.0), (0.0, 0.667), (0.333, 1.0)]
    # the whole: mean probabilities (0.625, 0.375), exactly at --min-confidence: answered
    assert [r["emotion"] for r in table] == ["calm", UNCERTAIN, "calm"]
    assert [r["ood_score"] for r in table] == [1.25, 1.0, 1.5]
    assert [r["unlike_training_data"] for r in table] == [True, False, True]  # above 1 only
    assert table[2]["probabilities"] == {"calm": 0.75, "sad": 0.25}
    plain = rows([prediction], ["calm", "sad"], per_window=False)
    assert len(plain) == 1 and plain[0]["emotion"] == "calm"  # no --min-confidence: always


def test_cli_errors_are_one_line(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ser_main(["predict", str(tmp_path / "nope.ckpt"), str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {tmp_path / 'nope.ckpt'}: no such checkpoint or exported model"
    ]


def test_predict_does_not_import_lightning(checkpoint: Path, tmp_path: Path):
    sf.write(tmp_path / "a.wav", noise(1.0), RATE)
    out = run_without_lightning(checkpoint, tmp_path / "a.wav")
    assert "a.wav" in out and "HEAVY []" in out


def test_a_model_trained_on_denoised_audio_denoises_before_predicting(tmp_path: Path):
    from ser.transforms.denoise import reduce_noise

    checkpoint = torch.load(write_checkpoint(tmp_path / "plain.ckpt"), weights_only=True)
    checkpoint["ser"]["pipeline"]["denoise"] = {
        "mode": "stationary",
        "prop_decrease": 1.0,
        "where": "decode",
    }
    torch.save(checkpoint, tmp_path / "denoised.ckpt")
    sf.write(tmp_path / "noisy.wav", noise(2.0), RATE)
    clean = reduce_noise(read_audio(tmp_path / "noisy.wav", RATE), RATE, "stationary")
    sf.write(tmp_path / "clean.wav", clean.numpy(), RATE, subtype="FLOAT")
    model = load_model(tmp_path / "denoised.ckpt")
    assert model.decode_denoise == Denoise(mode="stationary", prop_decrease=1.0, where="decode")
    (denoised,) = predict_files(model, [tmp_path / "noisy.wav"])
    plain = load_model(tmp_path / "plain.ckpt")
    assert plain.decode_denoise is None
    (by_hand,) = predict_files(plain, [tmp_path / "clean.wav"])
    (raw,) = predict_files(plain, [tmp_path / "noisy.wav"])
    assert torch.allclose(denoised.probabilities, by_hand.probabilities, atol=1e-5)
    assert not torch.allclose(denoised.probabilities, raw.probabilities, atol=1e-3)
