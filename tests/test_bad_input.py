"""The README's bad-input table, one test per row: what ``ser`` does with each kind of bad input.

Row numbers match the table in README.md ("Bad input"). Commands run in-process through
``ser.__main__.main``, exactly as ``ser ...`` on the command line.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.data import RAVDESS
from ser.data.splits import SplitSpec

from .helpers import (
    CLASSES,
    CONFIG,
    FAST,
    RATE,
    RAVDESS_YAML,
    REPO,
    noise,
    one_error_line,
    run_ser,
    write_checkpoint,
    write_ravdess,
)

MANIFEST_YAML = str(REPO / "configs" / "data" / "manifest.yaml")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "tiny.ckpt")


def predict(checkpoint: Path, *files: Path, extra: tuple[str, ...] = ()) -> list[dict]:
    """``ser predict CKPT FILES --output out.json``: the whole-recording rows it wrote."""
    out = checkpoint.parent / "out.json"
    ser_main(["predict", str(checkpoint), *map(str, files), "--output", str(out), *extra])
    return [row for row in json.loads(out.read_text()) if row["window"] == "all"]


def exit_message(capsys, *argv: str) -> str:
    """Run ``ser ARGV``, expect exit status 2 and one error line; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        ser_main(list(argv))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in "\n".join(lines)
    return lines[-1]


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def good_file(folder: Path) -> Path:
    sf.write(folder / "good.wav", noise(1.0), RATE)
    return folder / "good.wav"


def wav_bytes(wave: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


# Rows 1-6: files that hold no usable audio are skipped with a warning naming them; the rest runs.
BROKEN = {
    "1-empty-file": lambda: b"",
    "2-zero-sample-wav": lambda: wav_bytes(np.zeros(0, np.float32)),
    "3-truncated-header": lambda: wav_bytes(noise(0.5))[:30],
    "4-text-named-wav": lambda: b"emotion,angry\nthis is not audio\n",
    "5-nan-samples": lambda: wav_bytes(np.full(8000, np.nan, np.float32), subtype="FLOAT"),
    "5-inf-samples": lambda: wav_bytes(np.full(8000, np.inf, np.float32), subtype="FLOAT"),
    "6-pure-silence": lambda: wav_bytes(np.zeros(16000, np.float32)),
}
REASONS = {
    "1-empty-file": "not a readable audio file",
    "2-zero-sample-wav": "holds no samples",
    "3-truncated-header": "not a readable audio file",
    "4-text-named-wav": "not a readable audio file",
    "5-nan-samples": "NaN or infinite",
    "5-inf-samples": "NaN or infinite",
    "6-pure-silence": "silent",
}


@pytest.mark.parametrize("case", BROKEN)
def test_rows_1_to_6_broken_files_are_skipped_by_predict(checkpoint, tmp_path, caplog, case):
    bad = tmp_path / f"{case}.wav"
    bad.write_bytes(BROKEN[case]())
    good = good_file(tmp_path)
    with caplog.at_level(logging.WARNING):
        rows = predict(checkpoint, bad, good)
    assert [row["file"] for row in rows] == [str(good)]
    assert f"skipping {bad}" in warnings_of(caplog) and REASONS[case] in warnings_of(caplog)


def test_rows_1_to_5_broken_files_are_skipped_by_training(tmp_path, caplog):
    root = write_ravdess(tmp_path / "ravdess")
    bad = []
    for i, case in enumerate(c for c in BROKEN if not c.startswith("6")):
        path = root / "Actor_01" / f"03-01-05-01-01-{i + 3:02d}-01.wav"  # angry, actor 1
        path.write_bytes(BROKEN[case]())
        bad.append(path)
    data = RAVDESS(
        str(root), split=SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"])
    )
    with caplog.at_level(logging.WARNING, logger="ser"):
        data.setup("fit")
    assert sum(len(d) for d in data.datasets.values()) == 6 * 4 * 2  # every good clip, no bad one
    for path in bad:
        assert str(path) in warnings_of(caplog)


def test_row_7_telephone_audio_is_upsampled_with_a_warning(checkpoint, tmp_path, caplog):
    sf.write(tmp_path / "phone.wav", noise(2.0, rate=8000), 8000)
    with caplog.at_level(logging.WARNING):
        (row,) = predict(checkpoint, tmp_path / "phone.wav")
    assert row["end"] == pytest.approx(2.0) and row["emotion"] in CLASSES
    assert "8000 Hz audio upsampled" in warnings_of(caplog)


def test_row_8_96k_audio_is_resampled_like_16k(checkpoint, tmp_path):
    t = np.arange(3 * 96000) / 96000
    sf.write(tmp_path / "hi.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 96000)
    t = np.arange(3 * RATE) / RATE
    sf.write(tmp_path / "lo.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE)
    hi, lo = predict(checkpoint, tmp_path / "hi.wav", tmp_path / "lo.wav")
    assert hi["end"] == pytest.approx(3.0) and hi["emotion"] == lo["emotion"]
    for name in CLASSES:
        assert hi["probabilities"][name] == pytest.approx(lo["probabilities"][name], abs=2e-3)


def test_row_9_six_channels_are_mixed_down(checkpoint, tmp_path):
    six = np.stack([noise(1.5, seed=k) * (k + 1) / 6 for k in range(6)], axis=1)  # (T, 6): differ
    sf.write(tmp_path / "six.wav", six, RATE, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", six.mean(axis=1), RATE, subtype="FLOAT")
    six, ref = predict(checkpoint, tmp_path / "six.wav", tmp_path / "mono.wav")
    assert six["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-4)


def test_row_10_ten_minute_recording_is_windowed(checkpoint, tmp_path):
    sf.write(tmp_path / "long.flac", noise(600.0), RATE)
    out = tmp_path / "long.json"
    ser_main(["predict", str(checkpoint), str(tmp_path / "long.flac"), "--per-window",
              "--window", "4", "--hop", "4", "--batch-size", "64", "--output", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())
    assert len(rows) == 1 + 150 and rows[0]["end"] == pytest.approx(600.0)
    assert rows[-1]["start"] == pytest.approx(596.0)


def test_row_11_missing_path_is_skipped_or_an_error(checkpoint, tmp_path, caplog, capsys):
    good = good_file(tmp_path)
    with caplog.at_level(logging.WARNING):
        rows = predict(checkpoint, tmp_path / "gone.wav", good)
    assert [row["file"] for row in rows] == [str(good)]
    assert f"{tmp_path / 'gone.wav'}: no such file" in warnings_of(caplog)
    message = exit_message(capsys, "predict", str(checkpoint), str(tmp_path / "gone.wav"))
    assert "none of the 1 files could be read" in message


def test_row_12_missing_checkpoint(tmp_path, capsys):
    message = exit_message(capsys, "predict", str(tmp_path / "nope.ckpt"), str(tmp_path))
    assert f"{tmp_path / 'nope.ckpt'}: no such checkpoint" in message
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    message = exit_message(
        capsys, "test", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
        *FAST, "--ckpt_path", str(tmp_path / "nope.ckpt"),
    )  # fmt: skip
    assert f"--ckpt_path {tmp_path / 'nope.ckpt'}: no such checkpoint" in message


def test_row_15_unwritable_output_folder_fails_before_work(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    good = good_file(tmp_path)
    out = blocker / "results.csv"
    message = exit_message(capsys, "predict", str(checkpoint), str(good), "--output", str(out))
    assert f"--output {out}: cannot write to {blocker}" in message
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19))
    message = exit_message(
        capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
        *FAST, "--trainer.logger.init_args.save_dir", str(blocker / "logs"),
    )  # fmt: skip
    assert f"cannot write to {blocker / 'logs'}" in message


def test_row_16_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "bad.ckpt").write_bytes(b"\x00garbage" * 100)
    message = exit_message(capsys, "predict", str(tmp_path / "bad.ckpt"), str(tmp_path))
    assert f"{tmp_path / 'bad.ckpt'}: not a ser checkpoint or exported model" in message


class Payload:
    """Unpickling this would run code (write a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_row_17_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": {}, "evil": Payload(marker)}, tmp_path / "evil.ckpt")
    assert pickle.dumps(Payload(marker))  # the payload is real pickled code
    message = exit_message(capsys, "predict", str(tmp_path / "evil.ckpt"), str(tmp_path))
    assert "not a ser checkpoint" in message and not marker.exists()


def test_row_18_missing_corpus_names_path_source_and_layout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the logger's folder is made before the corpus is looked for
    message = exit_message(
        capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML,
        "--data.root", str(tmp_path / "no-such-folder"), *FAST,
    )  # fmt: skip
    assert str(tmp_path / "no-such-folder") in message
    assert "zenodo.org" in message and "Actor_01" in message


def test_row_19_bad_options_name_the_option(checkpoint, tmp_path, capsys):
    good = good_file(tmp_path)
    message = exit_message(capsys, "predict", str(checkpoint), str(good), "--window", "0")
    assert "window (0.0)" in message
    message = exit_message(capsys, "predict", str(checkpoint), str(good), "--output", "x.txt")
    assert "--output x.txt: use a .csv or .json" in message


# Row 20: --ckpt_path is read by ser's own reader before Lightning loads it.
def ravdess_args(root: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST, *extra]


#: The tiny checkpoint's net and front-end, as options (a config that fits it).
TINY_NET = ["--model.net.init_args.channels", "[4, 8]", "--model.net.init_args.convs_per_block",
            "1", "--data.frontend.init_args.n_mels", "32"]  # fmt: skip


def test_row_20_a_file_that_is_no_checkpoint_through_the_command_line(tmp_path):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    result = run_ser("test", *ravdess_args(root), "--ckpt_path", "empty.ckpt", cwd=tmp_path)
    assert "--ckpt_path empty.ckpt: an empty file (0 bytes)" in one_error_line(result)


def bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files given as --ckpt_path, and what the error says of each."""
    tiny = write_checkpoint(tmp_path / "tiny.ckpt")
    (tmp_path / "truncated.ckpt").write_bytes(tiny.read_bytes()[:2000])
    torch.save({"evil": Payload(tmp_path / "marker.txt")}, tmp_path / "evil.ckpt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.ckpt")
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "model.ts")
    return {
        "truncated": (tmp_path / "truncated.ckpt", "not a ser checkpoint or exported model: not "
                      "the zip archive torch.save writes"),
        "pickled-code": (tmp_path / "evil.ckpt", "not a ser checkpoint or exported model: it holds "
                         "pickled Python objects"),
        "foreign": (tmp_path / "foreign.ckpt", "a checkpoint without the 'ser' entry"),
        "torchscript": (tmp_path / "model.ts", "a TorchScript export (ser export), not a training"),
        "another-net": (tiny, "its weights do not fit the model this config builds (net.blocks.0."
                        "weight is [4, 1, 3, 3] there, [16, 1, 3, 3] here); it holds a CNN2D"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        "test",
        pytest.param("fit", marks=pytest.mark.slow),
        pytest.param("validate", marks=pytest.mark.slow),
    ],
)
def test_row_20_bad_checkpoints_are_one_line_for_every_command(tmp_path, capsys, command):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    for path, expected in bad_checkpoints(tmp_path).values():
        message = exit_message(capsys, command, *ravdess_args(root), "--ckpt_path", str(path))
        assert f"--ckpt_path {path}: {expected}" in message
    assert not (tmp_path / "marker.txt").exists()  # the pickled code never ran


def test_row_20_a_checkpoint_of_another_class_count(tmp_path, capsys):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    tiny = write_checkpoint(tmp_path / "tiny.ckpt")  # 4 classes
    message = exit_message(
        capsys, "fit", *ravdess_args(root, *TINY_NET, "--data.emotions", "[neutral, happy]"),
        "--ckpt_path", str(tiny),
    )  # fmt: skip
    assert "(net.head.4.weight is [4, 8] there, [2, 8] here)" in message
    assert "for 4 classes: use the config of the run that wrote it" in message


# Row 21: numeric settings out of range, and clips too short for the net, refused at start-up.
def test_row_21_a_crop_too_short_for_the_net_through_the_command_line(tmp_path):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    result = run_ser("fit", *ravdess_args(root, "--data.max_seconds", "0.01"), cwd=tmp_path)
    assert one_error_line(result) == (
        "error: --data.max_seconds (0.01 s) gives 1 feature frames, and CNN2D needs at least "
        "16: use 0.24 s or more"
    )


OUT_OF_RANGE = {
    "lr": (["--model.optimizer.init_args.lr", "-1"], "--model.optimizer: Invalid learning rate"),
    "dropout": (["--model.net.init_args.dropout", "2"], "CNN2D: dropout=2.0 must be in [0, 1)"),
    "channels": (["--model.net.init_args.channels", "[0, 8]"], "CNN2D: channels=[0, 8] must be"),
    "smoothing": (["--model.label_smoothing", "1.5"], "label_smoothing=1.5 must be in [0, 1)"),
    "sample-rate": (["--data.sample_rate", "100"], "sample_rate (100) must be at least 4000 Hz"),
    "few-mels": (["--data.frontend.init_args.n_mels", "8"], "need at least 16 feature bins"),
    "hop": (["--data.frontend.init_args.hop_ms", "2000"], "use 30 s or more"),
    "epochs-forever": (["--trainer.max_epochs", "-1"], "the run never ends"),
    "epochs-negative": (["--trainer.max_epochs", "-5"], "`max_epochs` must be a non-negative"),
    "score-window": (["--score", "recordings", "--window", "0.05"], "--window (0.05 s) gives"),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
def test_row_21_numeric_settings_out_of_range(tmp_path, capsys, case):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19))
    option, expected = OUT_OF_RANGE[case]
    assert expected in exit_message(capsys, "fit", *ravdess_args(root, *option))


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--window", "inf"], "window (inf), hop (2.0) and batch size (16) must be positive"),
        (
            ["--window", "0.01"],
            "--window (0.01 s) gives 2 feature frames, and CNN2D needs at least 4",
        ),
    ],
)
def test_row_21_predict_windows(checkpoint, tmp_path, capsys, option, expected):
    message = exit_message(capsys, "predict", str(checkpoint), str(good_file(tmp_path)), *option)
    assert expected in message


# Row 22: audio without signal or too short: skipped or answered with a warning naming the file.
def test_row_22_constant_and_too_short_audio_through_the_command_line(checkpoint, tmp_path):
    sf.write(tmp_path / "dc.wav", np.full(16000, 0.5, np.float32), RATE)
    sf.write(tmp_path / "blip.wav", noise(0.05), RATE)
    result = run_ser("predict", str(checkpoint), "dc.wav", "blip.wav", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipping dc.wav: silent or constant" in result.stderr
    assert "blip.wav: only 0.05 s of audio, padded with silence to 0.25 s" in result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["blip.wav"]


# Row 23: contradictory labels in a manifest.
def test_row_23_a_file_listed_with_two_labels(tmp_path, capsys):
    good_file(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\ngood.wav,happy\nother.wav,sad\n./good.wav,angry\n")
    message = exit_message(capsys, "fit", "--config", CONFIG, "--data", MANIFEST_YAML,
                           "--data.manifest", str(manifest))  # fmt: skip
    assert f"manifest {manifest}: rows 2 and 4 give {tmp_path / 'good.wav'} two labels" in message
    assert "(happy, angry)" in message


# Row 24: every ending soundfile reads is found by folder scans; other files are named.
def test_row_24_opus_is_found_and_unreadable_files_are_named(checkpoint, tmp_path, caplog):
    folder = tmp_path / "recordings"
    folder.mkdir()
    sf.write(folder / "a.opus", noise(1.0, rate=48000), 48000, format="OGG", subtype="OPUS")
    sf.write(folder / "b.flac", noise(1.0), RATE)
    (folder / "c.m4a").write_bytes(b"not readable by libsndfile")
    with caplog.at_level(logging.WARNING):
        rows = predict(checkpoint, folder)
    assert [Path(row["file"]).name for row in rows] == ["a.opus", "b.flac"]
    expected = f"{folder}: ignored 1 audio files soundfile cannot decode; convert them to WAV or "
    assert expected + f"FLAC: {folder / 'c.m4a'}" in warnings_of(caplog)


# Row 25: a full disk while a checkpoint is written.
def test_row_25_full_disk_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import ser.checkpointing

    root = write_ravdess(tmp_path / "ravdess")
    monkeypatch.chdir(tmp_path)
    save = torch.save

    def save_on_a_disk_that_fills(obj, path):  # epoch 0's checkpoints fit, then the disk is full
        if isinstance(obj, dict) and obj.get("epoch", 0) >= 1:
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, path)

    monkeypatch.setattr(ser.checkpointing.torch, "save", save_on_a_disk_that_fills)
    message = exit_message(
        capsys, "fit", *ravdess_args(root, *TINY_NET, "--trainer.max_epochs", "3")
    )
    last = tmp_path / "lightning_logs" / "cnn2d" / "version_0" / "checkpoints" / "last.ckpt"
    assert message.startswith("error: ") and "no space left on device" in message
    assert "the previous last.ckpt is kept" in message or "the previous best" in message
    monkeypatch.undo()
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]


# Row 26: a failure that is not the user's input: one line and exit 1; SER_DEBUG=1 shows it all.
def test_row_26_tracebacks_only_with_ser_debug(checkpoint, tmp_path, capsys, monkeypatch):
    import ser.inference.predict

    def broken(args):
        raise RuntimeError("a bug\nsecond line")

    monkeypatch.setattr(ser.inference.predict, "run", broken)
    with pytest.raises(SystemExit) as exit_info:
        ser_main(["predict", str(checkpoint), str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: RuntimeError: a bug (ser failed; run again with SER_DEBUG=1 for the "
                   "traceback)"]  # fmt: skip
    monkeypatch.setenv("SER_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        ser_main(["predict", str(checkpoint), str(tmp_path)])
