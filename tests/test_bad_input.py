"""The README's bad-input table, one test per row: what ``ser`` does with each kind of bad input.

Row numbers match the table in README.md ("Bad input"). Commands run in-process through
``ser.__main__.main``, exactly as ``ser ...`` on the command line.
"""

from __future__ import annotations

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
    noise,
    write_checkpoint,
    write_ravdess,
)


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
    mono = noise(1.5)
    sf.write(tmp_path / "six.wav", np.repeat(mono[:, None], 6, axis=1) * 0.5, RATE)
    sf.write(tmp_path / "mono.wav", mono * 0.5, RATE)
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


def test_row_18_missing_corpus_names_path_source_and_layout(tmp_path, capsys):
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
