"""Corpora as real copies come: odd sample rates (24,414 and 12,207 Hz from laboratory recording
systems, 44,056 Hz from early video-based digital audio) and AIFF data in files named ``.wav``,
through ``ser fit`` and ``ser predict``; seed recipes S0 and S3 on generated copies of their
corpora's real size and naming, with speaker-independent folds."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.audio import read_audio
from ser.cli import main
from ser.inference import clip_probabilities, load_model, predict_files

from .helpers import (
    AESDD_FOLDERS,
    REPO,
    TESS_FOLDERS,
    fit,
    noise,
    write_checkpoint,
    write_ravdess,
)

RECIPES = REPO / "configs" / "recipes"


def as_aiff(path: Path) -> None:
    """Rewrite ``path`` as AIFF, keeping its name (and its ``.wav`` ending)."""
    data, rate = sf.read(path, dtype="float32")
    sf.write(path, data, rate, format="AIFF", subtype="PCM_16")


def test_fit_and_predict_at_an_odd_rate_with_aiff_named_wav(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rate = 24414
    root = write_ravdess(tmp_path / "ravdess", sample_rate=rate)
    files = sorted(root.rglob("*.wav"))
    for path in files[::2]:
        as_aiff(path)
    assert sf.info(str(files[0])).format == "AIFF" and sf.info(str(files[1])).format == "WAV"
    cli = fit(root, "--trainer.max_epochs", "1")
    data = cli.datamodule
    assert sum(len(d) for d in data.datasets.values()) == len(files)  # every file, AIFF too
    test = data.datasets["test"]
    for clip, wave in zip(test.clips, test.waves, strict=True):
        assert torch.equal(wave, read_audio(clip.path, 16000))  # the one decode: soxr
        assert len(wave) == round(sf.info(str(clip.path)).frames * 16000 / rate)
    run = tmp_path / "lightning_logs" / "cnn2d" / "version_0"
    assert json.loads((run / "test" / "metrics.json").read_text())["n_clips"] == len(test)
    model = load_model(run / "checkpoints" / "last.ckpt")
    aiff = [c.path for c in test.clips if sf.info(str(c.path)).format == "AIFF"][:2]
    for prediction, path in zip(predict_files(model, aiff), aiff, strict=True):
        # the block-by-block reader of ser predict gives the model what training decoded
        (expected,) = clip_probabilities(model, [read_audio(path, 16000)], torch.device("cpu"))
        torch.testing.assert_close(prediction.probabilities, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rate", [12207, 44056, 47999])
def test_predict_reads_odd_rates_and_aiff_named_wav(rate: int, tmp_path: Path):
    model = load_model(write_checkpoint(tmp_path / "tiny.ckpt"))
    wave = noise(3.0, rate=rate, channels=2, seed=rate)
    sf.write(tmp_path / "plain.wav", wave, rate, subtype="PCM_16")
    sf.write(tmp_path / "aiff.wav", wave, rate, format="AIFF", subtype="PCM_16")
    aiff, plain = predict_files(model, [tmp_path / "aiff.wav", tmp_path / "plain.wav"])
    assert aiff.duration == pytest.approx(3.0, abs=1e-3)
    torch.testing.assert_close(aiff.probabilities, plain.probabilities, atol=0, rtol=0)
    (expected,) = clip_probabilities(model, [read_audio(tmp_path / "aiff.wav", 16000)],
                                     torch.device("cpu"))  # fmt: skip
    torch.testing.assert_close(aiff.probabilities, expected, atol=1e-5, rtol=0)


def write_tess(root: Path, words: int, rate: int) -> Path:
    """TESS's layout: ``<OAF|YAF>_<emotion>/<speaker>_<word>_<code>.wav``, 2 x 7 x ``words``
    clips of 0.4 s at ``rate``, with the released set's ``OA_`` spelling of a few names."""
    rng = np.random.default_rng(0)
    t = np.arange(round(0.4 * rate)) / rate
    for speaker in ("OAF", "YAF"):
        for k, (code, folder) in enumerate(TESS_FOLDERS.items()):
            (root / f"{speaker}_{folder}").mkdir(parents=True)
            for w in range(words):
                prefix = "OA" if speaker == "OAF" and w % 50 == 1 else speaker
                wave = 0.3 * np.sin(2 * np.pi * (200 + 90 * k) * t) + 0.02 * rng.standard_normal(
                    t.size
                )
                path = root / f"{speaker}_{folder}" / f"{prefix}_w{w}_{code}.wav"
                sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
    return root


def write_aesdd(root: Path, rate: int) -> Path:
    """AESDD as one copy came: 5 speakers x 5 emotions x 24 utterances of 0.4 s at ``rate``, some
    speakers written ``(01)``, take suffixes ``(5)b``, an empty file and a header without data;
    602 files."""
    rng = np.random.default_rng(0)
    t = np.arange(round(0.4 * rate)) / rate
    for k, (code, folder) in enumerate(AESDD_FOLDERS.items()):
        (root / folder).mkdir(parents=True)
        for spk in range(1, 6):
            for u in range(1, 25):
                bracket = f"({spk:02d})" if u % 7 == 0 else f"({spk})"
                take = "b" if u == 24 else ""
                wave = 0.3 * np.sin(2 * np.pi * (200 + 90 * k + 7 * spk) * t)
                wave = wave + 0.02 * rng.standard_normal(t.size)
                path = root / folder / f"{code}{u:02d} {bracket}{take}.wav"
                sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
    sf.write(root / "fear" / "f25 (2).wav", np.zeros(0, np.float32), rate)  # 0.0 s
    (root / "fear" / "f26 (2).wav").write_bytes((root / "fear" / "f01 (2).wav").read_bytes()[:44])
    return root


FAST = ["--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false"]


@pytest.mark.slow
def test_s0_recipe_on_an_aesdd_copy_of_real_size(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    root = write_aesdd(tmp_path / "AESDD", rate=44100)
    with caplog.at_level(logging.INFO, logger="ser"):
        cli = main(["fit", "--config", str(RECIPES / "s0_aesdd_cnn2d.yaml"), "--data.root",
                    str(root), "--data.split.fold", "0", *FAST])  # fmt: skip
    # the corpus check counts the files found, speaker 2's two broken ones too
    assert "speakers (clips): 1 (120), 2 (122), 3 (120), 4 (120), 5 (120)" in caplog.text
    assert "no samples" in caplog.text and "look like one speaker" not in caplog.text
    data = cli.datamodule.datasets
    assert {c.speaker for c in data["test"].clips} == {"1"} and len(data["test"]) == 120
    assert not {c.speaker for c in data["train"].clips} & {"1"}
    assert len(set(data["test"].labels)) == 5


@pytest.mark.slow
def test_s3_recipes_on_a_tess_copy_of_real_size_speaker_independent(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_tess(tmp_path / "TESS", words=200, rate=24414)
    for recipe in ("s3_tess_lstm", "s3_tess_cnn_lstm"):
        cli = main(["fit", "--config", str(RECIPES / f"{recipe}.yaml"), "--data",
                    str(REPO / "configs" / "data" / "tess.yaml"), "--data.root", str(root),
                    *FAST])  # fmt: skip
        data = cli.datamodule.datasets
        assert {c.speaker for c in data["test"].clips} == {"YAF"} and len(data["test"]) == 1400
        assert {c.speaker for c in data["train"].clips} == {"OAF"}
        assert len(data["train"]) + len(data["val"]) == 1400
