"""Settings errors name the setting: environment variables, a manifest's encoding, empty lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser.__main__ import main as ser_main
from ser.data.manifest import read_manifest

from .helpers import (
    CONFIG,
    FAST,
    RAVDESS_YAML,
    REPO,
    error_line,
    write_encoder,
    write_ravdess,
    write_tone,
)

MANIFEST_YAML = str(REPO / "configs" / "data" / "manifest.yaml")


def test_an_unwritable_cache_folder_names_ser_cache_dir(tmp_path, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=1)
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML,
                      "--data.root", str(root), *FAST)  # fmt: skip
    assert f"SER_CACHE_DIR (ser's cache folder): cannot write to {tmp_path / 'a-file'}" in line


def test_torch_home_that_is_not_a_folder_is_named(tmp_path, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=1)
    write_encoder(monkeypatch, tmp_path / "torch", "WAVLM_BASE_PLUS")
    (tmp_path / "torch-file").write_text("")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-file"))
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "fit", "--config", str(REPO / "configs" / "wavlm_base_plus.yaml"),
                      "--data", RAVDESS_YAML, "--data.root", str(root))  # fmt: skip
    assert f"TORCH_HOME {tmp_path / 'torch-file'}: not a folder" in line
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    line = error_line(capsys, "fit", "--config", str(REPO / "configs" / "wavlm_base_plus.yaml"),
                      "--data", RAVDESS_YAML, "--data.root", str(root))  # fmt: skip
    assert f"TORCH_HOME={tmp_path / 'empty'}" in line and "no weights for encoder" in line


def write_manifest(folder: Path, encoding: str, bom: bytes = b"") -> Path:
    rows = ["path,label,speaker"]
    for i, label in enumerate(["happy", "sad", "angry", "neutral"] * 2):
        name = f"clip-é{i}.wav"  # a non-ASCII name: the encoding matters
        write_tone(folder / name, 200.0 + 50 * i, seed=i)
        rows.append(f"{name},{label},s{i % 2}")
    path = folder / f"m-{encoding}.csv"
    path.write_bytes(bom + ("\n".join(rows) + "\n").encode(encoding))
    return path


def test_manifests_in_utf8_with_a_bom_and_utf16_are_read(tmp_path):
    plain = read_manifest(write_manifest(tmp_path, "utf-8"))
    assert read_manifest(write_manifest(tmp_path, "utf-8", b"\xef\xbb\xbf")) == plain
    assert read_manifest(write_manifest(tmp_path, "utf-16")) == plain  # Python writes its BOM
    assert plain[0].path.name == "clip-é0.wav"


def test_a_manifest_in_another_encoding_says_which_to_use(tmp_path, capsys, monkeypatch):
    manifest = write_manifest(tmp_path, "latin-1")
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "fit", "--config", CONFIG, "--data", MANIFEST_YAML,
                      "--data.manifest", str(manifest))  # fmt: skip
    assert f"manifest {manifest}: not UTF-8 text (byte 0xe9 at position" in line
    assert "save it as UTF-8" in line


@pytest.mark.parametrize("emotions", ["[]", "[happy]"])
def test_an_empty_emotion_list_says_so(tmp_path, capsys, monkeypatch, emotions):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=1)
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "fit", "--config", CONFIG, "--data", RAVDESS_YAML,
                      "--data.root", str(root), *FAST, "--data.emotions", emotions)  # fmt: skip
    assert "--data.emotions" in line and "give two or more emotions" in line


def test_no_command_replaces_a_file_without_overwrite(tmp_path, capsys):
    """One policy: export (every format) and predict's --output and --plot."""
    from .helpers import RATE, noise, write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "m.ckpt")
    export = ["export", str(checkpoint), "--output", str(tmp_path / "out"), "--format"]
    ser_main([*export, "torchscript"])
    before = (tmp_path / "out" / "model.ts").read_bytes()
    line = error_line(capsys, *export, "torchscript")
    assert "model.ts already exists; " in line and "--overwrite" in line
    assert (tmp_path / "out" / "model.ts").read_bytes() == before
    ser_main([*export, "hub"])  # other files of the folder stay; the model folder's are new
    assert "model.safetensors already exists (and 2 more" in error_line(capsys, *export, "hub")
    ser_main([*export, "torchscript", "--overwrite"])
    import soundfile as sf

    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    for option, name in (("--output", "out.csv"), ("--plot", "out.png")):
        (tmp_path / name).write_text("mine")
        predict = [
            "predict",
            str(checkpoint),
            str(tmp_path / "clip.wav"),
            option,
            str(tmp_path / name),
        ]
        assert f"{option} {tmp_path / name}: {tmp_path / name} already exists" in error_line(
            capsys, *predict
        )
        assert (tmp_path / name).read_text() == "mine"
        ser_main([*predict, "--overwrite"])
        assert (tmp_path / name).read_bytes() != b"mine"
