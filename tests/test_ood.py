"""Knowing when not to trust an answer: the out-of-distribution score and its threshold, how
``ser predict`` marks recordings unlike the training data, and ``--min-confidence``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.errors import SERError
from ser.inference import load_model, predict_files
from ser.inference.export import export
from ser.inference.ood import OOD_KEY, UNLIKE, feature_summary, fit_ood
from ser.inference.predict import UNCERTAIN, main
from ser.spec import SPEC_KEY

from .helpers import CLASSES, RATE, speech_like, write_checkpoint


def test_feature_summary_is_the_mean_and_std_of_each_bin_over_the_valid_frames():
    features = torch.randn(2, 3, 10)
    lengths = torch.tensor([10, 4])
    summary = feature_summary(features, lengths)  # (2, 6)
    for i, n in enumerate(lengths.tolist()):
        valid = features[i, :, :n].numpy()
        expected = np.concatenate([valid.mean(axis=1), valid.std(axis=1)])
        np.testing.assert_allclose(summary[i].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_feature_summary_of_a_one_frame_clip_and_of_an_empty_one():
    features = torch.randn(2, 3, 10)
    summary = feature_summary(features, torch.tensor([1, 0]))
    torch.testing.assert_close(summary[0], torch.cat([features[0, :, 0], torch.zeros(3)]))
    assert torch.equal(summary[1], torch.zeros(6))  # no frame: zeros, not NaN


def test_fit_ood_takes_the_edges_of_its_range_and_records_what_it_fitted():
    generator = torch.Generator().manual_seed(0)
    two = torch.randn(2, 4, generator=generator)
    stats = fit_ood(two, accept=1.0)  # two clips are enough; 1.0 accepts every one
    assert (stats.accept, stats.n_clips) == (1.0, 2)
    assert float(stats.score(two).max()) == pytest.approx(stats.threshold)
    stats = fit_ood(torch.randn(50, 4, generator=generator), accept=0.5)
    assert (stats.accept, stats.n_clips) == (0.5, 50)
    for accept in (0.0, -0.5, 1.01, 2.0):
        with pytest.raises(SERError, match=rf"^OOD accept share {accept} must be in \(0, 1\]"):
            fit_ood(two, accept=accept)


def test_statistics_of_another_front_end_are_refused_naming_both_sizes():
    stats = fit_ood(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(
        SERError, match=r"^OOD statistics of 4 feature numbers, the model's features give 6: "
    ):
        stats.score(torch.randn(3, 6))


def test_threshold_accepts_the_share_asked_and_shifted_clips_score_higher():
    generator = torch.Generator().manual_seed(0)
    validation = torch.randn(400, 8, generator=generator) * 2 + 5
    stats = fit_ood(validation, accept=0.9)
    scores = stats.score(validation)
    assert (scores <= stats.threshold).float().mean() == pytest.approx(0.9, abs=0.005)
    # a clip at the mean is 0 away; the score is the RMS of the per-number z-scores
    assert float(stats.score(torch.tensor([stats.mean]))) == pytest.approx(0.0, abs=1e-9)
    one_std = torch.tensor([stats.mean]) + torch.tensor([stats.std])
    assert float(stats.score(one_std)) == pytest.approx(1.0, rel=1e-6)
    shifted = torch.randn(100, 8, generator=generator) * 2 + 9
    assert (stats.score(shifted) > stats.threshold).float().mean() > 0.9
    with pytest.raises(SERError, match="at least 2 validation clips"):
        fit_ood(validation[:1])


def fitted_checkpoint(tmp_path: Path) -> tuple[Path, list[Path], Path]:
    """A tiny checkpoint whose OOD statistics were fitted on speech-like clips; such clips (in)
    and a white-noise file (out)."""
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    model = load_model(checkpoint)
    inside = []
    for seed in range(12):
        path = tmp_path / f"speech{seed}.wav"
        sf.write(path, speech_like(1.5, seed=seed), RATE)
        inside.append(path)
    summaries = []
    with torch.inference_mode():
        for path in inside[:10]:  # fitted on 10, the last 2 held out
            wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
            _, features, lengths = model.run(wave[None])
            summaries.append(feature_summary(features, lengths))
    saved = torch.load(checkpoint, weights_only=True)
    saved[SPEC_KEY][OOD_KEY] = fit_ood(torch.cat(summaries), accept=1.0).to_spec()
    torch.save(saved, checkpoint)
    outside = tmp_path / "noise.wav"
    sf.write(outside, 0.3 * np.random.default_rng(0).standard_normal(RATE * 2), RATE)
    return checkpoint, inside, outside


def test_predict_marks_a_recording_unlike_the_training_data(tmp_path: Path, capsys):
    checkpoint, inside, outside = fitted_checkpoint(tmp_path)
    output = tmp_path / "out.json"
    main([str(checkpoint), str(inside[-1]), str(outside), "--output", str(output)])
    printed = capsys.readouterr().out.splitlines()
    assert UNLIKE in next(line for line in printed if "noise.wav" in line)
    assert UNLIKE not in next(line for line in printed if "speech11.wav" in line)
    rows = {Path(r["file"]).name: r for r in json.loads(output.read_text())}
    assert rows["noise.wav"]["unlike_training_data"] is True
    assert rows["noise.wav"]["ood_score"] > 1 > rows["speech11.wav"]["ood_score"]
    assert rows["speech11.wav"]["unlike_training_data"] is False
    main([str(checkpoint), str(outside), "--output", str(tmp_path / "out.csv")])
    header, row = (tmp_path / "out.csv").read_text().splitlines()[:2]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["unlike_training_data"] == "true" and float(values["ood_score"]) > 1


def test_the_server_marks_it_too(tmp_path: Path):
    from ser.serve.answers import Limits, Options, answer_files, upload

    checkpoint, inside, outside = fitted_checkpoint(tmp_path)
    options = Options(per_window=True)
    payloads = [upload(p.read_bytes(), p.name, options) for p in (inside[-1], outside)]
    speech, noise = [r["body"] for r in answer_files(load_model(checkpoint), payloads, Limits())]
    assert noise["unlike_training_data"] is True and speech["unlike_training_data"] is False
    assert noise["ood_score"] > 1 and noise["windows"][0]["unlike_training_data"] is True


def test_a_checkpoint_without_statistics_still_predicts_with_one_info_line(
    tmp_path: Path, capsys, caplog
):
    checkpoint = write_checkpoint(tmp_path / "old.ckpt")
    path = tmp_path / "a.wav"
    sf.write(path, speech_like(1.5), RATE)
    with caplog.at_level(logging.INFO, logger="ser"):
        main([str(checkpoint), str(path), "--output", str(tmp_path / "out.json")])
    assert [r.message for r in caplog.records if "no OOD statistics" in r.message]
    assert UNLIKE not in capsys.readouterr().out
    (row,) = json.loads((tmp_path / "out.json").read_text())
    assert row["ood_score"] is None and row["unlike_training_data"] is None


def test_the_statistics_travel_into_exports_and_model_folders(tmp_path: Path):
    checkpoint, inside, outside = fitted_checkpoint(tmp_path)
    paths = [inside[-1], outside]
    expected = [p.ood_score for p in predict_files(load_model(checkpoint), paths)]
    export(checkpoint, tmp_path / "ts", ["torchscript"])
    export(checkpoint, tmp_path / "hub", ["hub"])
    for loaded in (tmp_path / "ts" / "model.ts", tmp_path / "hub"):
        scores = [p.ood_score for p in predict_files(load_model(loaded), paths)]
        assert scores == pytest.approx(expected, rel=1e-4), loaded


def test_a_damaged_ood_entry_is_a_clear_error(tmp_path: Path):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    saved[SPEC_KEY][OOD_KEY] = {"mean": [0.0], "std": [0.0], "threshold": 1.0}
    torch.save(saved, checkpoint)
    with pytest.raises(SERError, match="'ood' entry is damaged"):
        load_model(checkpoint)


def test_min_confidence_answers_uncertain_below_it(tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    paths = []
    for seed in range(4):
        paths.append(tmp_path / f"s{seed}.wav")
        sf.write(paths[-1], speech_like(1.5, seed=seed), RATE)
    output = tmp_path / "out.json"
    main([str(checkpoint), *map(str, paths), "--output", str(output)])
    rows = json.loads(output.read_text())
    assert all(r["emotion"] in CLASSES for r in rows)
    cut = sorted(r["confidence"] for r in rows)[2]  # two rows below it, two at or above
    main(
        [
            str(checkpoint),
            *map(str, paths),
            "--output",
            str(output),
            "--min-confidence",
            str(cut),
            "--overwrite",
        ]
    )
    for before, after in zip(rows, json.loads(output.read_text()), strict=True):
        expected = UNCERTAIN if before["confidence"] < cut else before["emotion"]
        assert after["emotion"] == expected and after["confidence"] == before["confidence"]
    assert sum(r["emotion"] == UNCERTAIN for r in json.loads(output.read_text())) == 2
    with pytest.raises(SERError, match="--min-confidence 1.5"):
        main([str(checkpoint), str(paths[0]), "--min-confidence", "1.5"])
