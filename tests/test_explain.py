"""``ser explain``: attributions of the top class to the features, drawn per file."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch import nn

from ser.errors import SERError
from ser.inference.explain import attribution, main
from ser.inference.export import export
from ser.inference.models import EmotionModel
from ser.transforms.pipeline import FeaturePipeline

from .helpers import LOGMEL, RATE, speech_like, write_checkpoint

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
