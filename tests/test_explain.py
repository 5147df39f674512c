"""``ser explain``: attributions of the top class to the features, drawn per file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from ser.__main__ import main as ser_main
from ser.audio import read_audio
from ser.errors import SERError
from ser.inference.explain import attribution, class_attributions, main
from ser.inference.export import export
from ser.inference.models import EmotionModel, load_model
from ser.transforms.pipeline import FeaturePipeline

from .helpers import LOGMEL, RATE, RAVDESS_YAML, speech_like, write_checkpoint

pytest.importorskip("captum")


class LowBands(nn.Module):
    """Class 0's logit is the mean of the four lowest feature bins; class 1's is 0."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        low = x[:, :4, :].mean(dim=(1, 2))  # (B,)
        return torch.stack([10 + low, torch.zeros_like(low)], dim=1)  # (B, 2)


@pytest.mark.parametrize("method", ["integrated-gradients", "occlusion"])
def test_attribution_lies_where_the_net_looks(method: str):
    model = EmotionModel(
        FeaturePipeline.from_spec({"frontend": LOGMEL}, RATE), LowBands(), ["a", "b"]
    )
    wave = torch.from_numpy(speech_like(1.0)).float()
    features, attributions, top = attribution(model, wave, method)
    assert top == 0 and attributions.shape == features.shape
    assert attributions[8:].abs().max() == 0  # beyond the bands (and the occlusion patch) nothing
    assert attributions[:4].abs().sum() > 0
    if method == "integrated-gradients":  # completeness: the logit's change from the baseline
        change = features[:4].mean() - features.min()
        assert float(attributions.sum()) == pytest.approx(float(change), rel=1e-3)


def test_cli_writes_one_picture_per_file(tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", speech_like(1.5, seed=len(name)), RATE)
    files = [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    main([str(checkpoint), *files, "-o", str(tmp_path / "out"), "--method", "occlusion"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert (tmp_path / "out" / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SERError, match="a.png already exists .*--overwrite"):  # one policy
        main([str(checkpoint), *files, "-o", str(tmp_path / "out"), "--method", "occlusion"])
    export(checkpoint, tmp_path / "ts", ["torchscript"])
    with pytest.raises(SERError, match="an export holds compiled code"):
        main([str(tmp_path / "ts" / "model.ts"), str(tmp_path / "a.wav"), "-o", str(tmp_path)])


def test_class_means_attribute_each_clip_to_its_true_class():
    """Class 1's logit is constant, so its clips' attributions are 0; class 0's lie in the four
    lowest bins. Frames are aligned at the clips' start: beyond the shorter clip, only the longer
    one counts."""
    model = EmotionModel(
        FeaturePipeline.from_spec({"frontend": LOGMEL}, RATE), LowBands(), ["a", "b"]
    )
    waves = [torch.from_numpy(speech_like(s, seed=i)).float() for i, s in enumerate((1.0, 0.5))]
    clips = [(waves[0], 0), (waves[1], 0), (waves[0], 1)]
    result = class_attributions(model, clips)
    assert result["counts"].tolist() == [2, 1]
    assert np.all(result["maps"][1] == 0) and np.all(result["profile"][1] == 0)
    singles = [attribution(model, w, target=0)[1].numpy() for w in waves]  # (n_features, F)
    short = singles[1].shape[1]
    assert result["maps"][0].shape == singles[0].shape
    np.testing.assert_allclose(result["maps"][0][:, :short], (singles[0][:, :short] + singles[1]) / 2,
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(result["maps"][0][:, short:], singles[0][:, short:], rtol=1e-5)
    expected = (singles[0].mean(axis=1) + singles[1].mean(axis=1)) / 2
    np.testing.assert_allclose(result["profile"][0], expected, rtol=1e-5, atol=1e-8)
    assert np.all(result["profile"][0][8:] == 0) and np.all(result["profile"][0][:4] > 0)


def toy_data(root: Path) -> list[str]:
    """The toy RAVDESS's options: test actors 19 and 20 (8 clips each: 2 of each emotion)."""
    return [
        "--data", RAVDESS_YAML, "--data.root", str(root), "--data.split.test_speakers",
        '["19", "20"]', "--data.split.val_speakers", '["15", "16"]',
    ]  # fmt: skip


def test_cli_test_split_writes_one_picture_per_class(ravdess_root: Path, tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")  # neutral, happy, sad, angry
    out = tmp_path / "out"
    data = toy_data(ravdess_root)
    main([str(checkpoint), "--test", "-o", str(out), *data])
    assert sorted(p.name for p in out.iterdir()) == [
        "angry.png", "attributions.csv", "attributions.npz", "happy.png", "neutral.png", "sad.png"
    ]  # fmt: skip
    assert (out / "sad.png").read_bytes()[:4] == b"\x89PNG"
    saved = np.load(out / "attributions.npz")
    assert saved["class_names"].tolist() == ["neutral", "happy", "sad", "angry"]
    assert saved["counts"].tolist() == [4, 4, 4, 4]  # 2 actors x 2 clips of each emotion
    assert saved["profile"].shape == (4, 32) and saved["maps"].shape[:2] == (4, 32)
    # the sad column: the mean over the test actors' sad clips (RAVDESS code 04) of each clip's
    # attribution to "sad", computed here from the files
    model = load_model(checkpoint)
    files = sorted(ravdess_root.glob("Actor_*/03-01-04-*-1[9].wav")) + sorted(
        ravdess_root.glob("Actor_*/03-01-04-*-20.wav")
    )
    assert len(files) == 4
    per_clip = [
        attribution(model, read_audio(f, RATE), target=2)[1].numpy().mean(axis=1) for f in files
    ]
    with open(out / "attributions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32
    sad = np.array([float(r["sad"]) for r in rows])
    np.testing.assert_allclose(sad, np.mean(per_clip, axis=0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(saved["profile"][2], np.mean(per_clip, axis=0), rtol=1e-5, atol=1e-8)
    assert "clips per class: neutral 4, happy 4, sad 4, angry 4" in capsys.readouterr().out
    with pytest.raises(SERError, match="already exists .*--overwrite"):
        main([str(checkpoint), "--test", "-o", str(out), *data])
    # --per-class 2: the first and the last clip of each class, one of each test actor
    main([str(checkpoint), "--test", "-o", str(out), "--per-class", "2", "--overwrite", *data])
    saved = np.load(out / "attributions.npz")
    assert saved["counts"].tolist() == [2, 2, 2, 2]
    expected = (per_clip[0] + per_clip[3]) / 2
    np.testing.assert_allclose(saved["profile"][2], expected, rtol=1e-5, atol=1e-8)


def test_cli_test_split_bad_input(ravdess_root: Path, tmp_path: Path, capsys):
    checkpoint = str(write_checkpoint(tmp_path / "tiny.ckpt"))
    data = toy_data(ravdess_root)
    out = ["-o", str(tmp_path / "out")]
    with pytest.raises(SERError, match="takes no files"):
        main([checkpoint, "a.wav", "--test", *out, *data])
    with pytest.raises(SERError, match="--data chooses a test split: add --test"):
        main([checkpoint, "a.wav", *out, *data])
    with pytest.raises(SERError, match="needs audio files"):
        main([checkpoint, *out])
    with pytest.raises(SERError, match="needs the data"):
        main([checkpoint, "--test", *out])
    with pytest.raises(SERError, match="--per-class 0"):
        main([checkpoint, "--test", "--per-class", "0", *out, *data])
    with pytest.raises(SystemExit) as err:  # through ser: one line, status 2
        ser_main(["explain", checkpoint, "--test", *out, "--data", RAVDESS_YAML,
                  "--data.root", str(tmp_path / "missing")])  # fmt: skip
    assert err.value.code == 2
    printed = capsys.readouterr().err.strip()
    assert printed.startswith("error:") and "corpus not found" in printed
    assert "Traceback" not in printed
