"""The face a newcomer meets: ``ser --help`` lists every subcommand, and a normal run prints no
warning the user cannot act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from ser.__main__ import COMMANDS
from ser.cli import main

from .helpers import CONFIG, RAVDESS_YAML, REPO, logged_steps, run_ser, tree_env, write_ravdess

EVERY = ("fit", "validate", "test", "predict", "explain", "export", "serve", "cv", "baseline", "explore", "download")  # fmt: skip


def test_help_lists_every_subcommand_with_one_line():
    for args in (["--help"], []):
        result = run_ser(*args)
        assert result.returncode == 0
        listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
        assert listed == list(EVERY) == list(COMMANDS)
        assert "the emotion of audio files" in result.stdout  # ser predict, not Lightning's


def test_a_fresh_interpreter_runs_the_tree_under_test(tmp_path: Path):
    """Every subprocess test starts ``ser`` with :func:`tree_env`: this checkout's code, not the
    ``ser`` installed in the environment (an editable install of another checkout)."""
    result = subprocess.run(
        [sys.executable, "-c", "import ser, tests.faults; print(ser.__file__)"],
        cwd=tmp_path, env=tree_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert Path(result.stdout.strip()) == REPO / "ser" / "__init__.py"


def test_unknown_command_is_one_error_and_the_list():
    result = run_ser("fitt")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown command 'fitt'")
    assert "Traceback" not in result.stderr


def test_a_normal_run_prints_no_warning_the_user_cannot_act_on(tmp_path: Path):
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=4)
    result = run_ser(
        "fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
        "--data.emotions", "[neutral, happy, sad, angry]", "--data.batch_size", "4",
        "--data.max_seconds", "0.5", "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]', "--trainer.max_epochs", "1",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
        cwd=tmp_path, env={"SER_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    for noise in ("Warning", "deprecated", "litlogger", "intended to run from within Python",
                  "dirpath has changed", "Traceback"):  # fmt: skip
        assert noise not in out, noise
    # the split line names the held-out speakers
    assert "val 32 (speakers 15, 16); test 32 (speakers 19, 20)" in out
    assert "wrote predictions" in out


def test_errors_raised_while_the_cli_builds_the_classes_are_one_line(capsys, tmp_path, monkeypatch):
    """jsonargparse wraps a constructor's SERError in its own long error; the user sees the SERError."""
    from ser.__main__ import main

    monkeypatch.chdir(tmp_path)
    for option, message in (
        (
            ["--data.sample_rate", "0"],
            "error: sample_rate (0) must be at least 4000 Hz",
        ),
        (["--data.emotions", "[grumpy]"], "error: unknown emotion label 'grumpy'"),
    ):
        try:
            main(["fit", "--config", CONFIG, *option])
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError("no error")
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), err


def test_settings_are_checked_where_they_are_set(tmp_path, capsys):
    """Values that would crash deep in torch are one line naming the option."""
    from ser.__main__ import main

    for option, message in (
        (["--data.batch_size", "0"], "batch_size (0) must be at least 1"),
        (["--trainer.max_epochs", "0"], "nothing would be trained"),
        (["--data.frontend.n_mels", "0"], "LogMel: n_mels (0) must be >= 1"),
        (["--data.frontend.hop_ms", "0"], "hop_ms (0.0) > 0"),
        (["--data.frontend", "ser.transforms.MFCC", "--data.frontend.n_mfcc", "80"],
         "MFCC: n_mfcc (80) must be between 1 and n_mels (64)"),
    ):  # fmt: skip
        try:
            main(["fit", "--config", CONFIG, *option])
        except SystemExit as exit:
            assert exit.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (option, err)


def test_a_run_stopped_by_sigterm_exits_non_zero_and_can_resume(tmp_path: Path, monkeypatch):
    import signal
    import time

    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=4)
    args = ["fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
            "--data.batch_size", "4", "--data.max_seconds", "0.5",
            "--data.split.test_speakers", '["19", "20"]', "--data.split.val_speakers", '["15", "16"]',
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    env = {"SER_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ser", *args, "--trainer.max_epochs", "1000"],
        cwd=tmp_path, env=tree_env(**env), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err and last.is_file()
    # resumed for one more epoch, it trains that epoch alone: one validation, after the saved steps
    saved = torch.load(last, weights_only=True)
    monkeypatch.chdir(tmp_path)  # resumed in this process: the same code, one start-up less
    main([*args, "--trainer.max_epochs", str(saved["epoch"] + 2), "--ckpt_path", str(last),
          "--test_after_fit", "false"])  # fmt: skip
    steps = logged_steps(last.parents[2] / "version_1")
    assert len(steps) == 1 and steps[0] >= saved["global_step"]
