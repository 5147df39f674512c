"""Every command that writes is under one policy (:func:`ser.io.refuse_to_replace`): a file the
user already has is replaced only with ``--overwrite``, refused in one line before any work.
(``ser export``, ``ser predict`` and ``ser explain`` are tested beside their other behaviour;
``ser cv``'s resume in tests/test_cv.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from ser.__main__ import main as ser_main

from .helpers import CONFIG, FAST, RAVDESS_YAML, error_line, fit, write_ravdess

#: The run folder of a fixed version, so a second run writes where the first did.
FIXED = ["--trainer.logger.init_args.version", "fixed"]


def test_test_report_is_not_replaced_without_overwrite(tmp_path: Path, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess")
    monkeypatch.chdir(tmp_path)
    cli = fit(root, "--trainer.max_epochs", "1", *FIXED)
    report = Path(cli.trainer.log_dir) / "test"
    first = (report / "metrics.json").read_text()
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    args = ["--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST, *FIXED]
    line = error_line(capsys, "test", *args, "--ckpt_path", checkpoint)
    assert f"ser test: the test report in {report}: {report}/" in line
    assert "already exists" in line and "--overwrite" in line
    assert (report / "metrics.json").read_text() == first  # refused before any work
    # a second fit into that folder: refused before it trains (its test would replace the report)
    line = error_line(capsys, "fit", *args, "--trainer.max_epochs", "1")
    assert f"ser fit: the test report in {report}" in line
    ser_main(["test", *args, "--ckpt_path", checkpoint, "--overwrite", "true"])
    assert json.loads((report / "metrics.json").read_text())["ckpt_path"] == checkpoint
    assert (report / "metrics.json").read_text() != first


def test_explore_figures_are_not_replaced_without_overwrite(tmp_path: Path, capsys):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2), clips_per_emotion=1, seconds=0.5)
    out = tmp_path / "fig"
    args = ["explore", "--data", RAVDESS_YAML, "--data.root", str(root), "--out", str(out)]
    out.mkdir()
    (out / "durations.png").write_text("mine")
    line = error_line(capsys, *args)
    assert f"--out {out}: {out / 'durations.png'} already exists" in line
    assert (out / "durations.png").read_text() == "mine" and not (out / "counts.png").exists()
    ser_main([*args, "--overwrite", "true"])
    assert (out / "durations.png").read_bytes()[:4] == b"\x89PNG"


def test_baseline_reports_are_not_replaced_without_overwrite(
    ravdess_root: Path, tmp_path: Path, capsys
):
    out = tmp_path / "b"
    args = [
        "baseline", "--data", RAVDESS_YAML, "--data.root", str(ravdess_root),
        "--data.split.test_speakers", '["19", "20"]', "--data.split.val_speakers", '["15", "16"]',
        "--out_dir", str(out), "--frontends",
        "[{class_path: ser.transforms.Handcrafted, init_args: {features: [zcr, rms], "
        "normalize: false}}]",
    ]  # fmt: skip
    report = out / "handcrafted-zcr-rms"
    report.mkdir(parents=True)
    (report / "predictions.csv").write_text("mine")  # a file the report would write
    line = error_line(capsys, *args)
    assert f"--out_dir {out}: {report / 'predictions.csv'} already exists" in line
    assert not (out / "summary.json").exists()
    (report / "predictions.csv").unlink()
    ser_main(args)
    summary = (out / "summary.json").read_text()
    line = error_line(capsys, *args)  # its own earlier run's files too
    assert f"{out / 'summary.json'} already exists (and 3 more it would write)" in line
    ser_main([*args, "--overwrite", "true"])
    assert json.loads((out / "summary.json").read_text())["best"] == json.loads(summary)["best"]
