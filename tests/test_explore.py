from pathlib import Path

import yaml

from ser.__main__ import main as ser_main

from .helpers import REPO, write_corpus, write_ravdess

RAVDESS_YAML = str(REPO / "configs" / "data" / "ravdess.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


def test_explore_corpus_config(tmp_path: Path, capsys):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 3), seconds=0.5)
    ser_main(["explore", "--data", RAVDESS_YAML, "--data.root", str(root), "--out",
              str(tmp_path / "fig")])  # fmt: skip
    out = capsys.readouterr().out
    assert "RAVDESS" in out and "24 clips" in out and "3 speakers" in out
    assert "neutral         6   0.50   0.50   0.50" in out  # 3 actors x 2 clips of 0.5 s
    assert "01 8, 02 8, 03 8" in out
    for name in ("counts", "durations", "waveforms", "features"):
        png = tmp_path / "fig" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000


def test_explore_run_config_with_another_corpus(tmp_path: Path, capsys):
    run_config = tmp_path / "config.yaml"
    run_config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1}, "model": {"class_path": "x"},
        "data": {"class_path": "ser.data.RAVDESS", "init_args": {
            "frontend": {"class_path": "ser.transforms.LogMel", "init_args": {"n_mels": 32}},
            "root": "/nowhere",
        }},
    }))  # fmt: skip
    names = [f"AudioData/{s}/{e}01.wav" for s in ("DC", "JE") for e in ("a", "sa", "su")]
    root = write_corpus(tmp_path / "savee", names)
    ser_main(["explore", "--config", str(run_config), "--data", str(REPO / "configs/data/savee.yaml"),
            "--data.root", str(root), "--out", str(tmp_path / "fig")])  # fmt: skip
    out = capsys.readouterr().out
    assert "SAVEE" in out and "6 clips" in out and "surprised" in out
    assert (tmp_path / "fig" / "features.png").is_file()
