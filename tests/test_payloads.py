"""No code from a file: a pickle payload (a ``__reduce__`` that writes a marker file) put into
each kind of file a user can hand to ``ser`` never runs, through the real command, and the
command says so in one line. Then a scan of ``ser/`` for the calls that would run one."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from ser.__main__ import main as ser_main
from ser.checkpointing import AtomicCheckpointIO
from ser.errors import SERError

from .helpers import (
    CLASSES,
    CONFIG,
    FAST,
    RATE,
    RAVDESS_YAML,
    REPO,
    noise,
    write_checkpoint,
    write_encoder,
    write_ravdess,
)


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "marker.txt"
    # the payload is real: plain unpickling runs it
    pickle.loads(pickle.dumps(Payload(path)))  # noqa: S301 (the test of the payload itself)
    assert path.read_text() == "code ran"
    path.unlink()
    return path


def evil_torch_file(path: Path, marker: Path, inside: object = None) -> Path:
    """A ``torch.save`` archive holding the payload (beside ``inside``, e.g. real weights)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"payload": Payload(marker), "data": inside}, path)
    return path


def refused(capsys, marker: Path, *argv: str) -> str:
    """Run ``ser ARGV``: exit status 2, one ``error:`` line and no traceback, the marker absent;
    return the error line."""
    with pytest.raises(SystemExit) as exit_info:
        ser_main(list(argv))
    err = capsys.readouterr().err
    assert not marker.exists(), "code from a file ran"
    assert exit_info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    sf.write(tmp_path / "clip.wav", noise(1.0), RATE)
    return tmp_path / "clip.wav"


def test_checkpoint_ensemble_member_and_export_input(tmp_path, marker, audio, capsys):
    good = write_checkpoint(tmp_path / "good.ckpt")
    evil = evil_torch_file(tmp_path / "evil.ckpt", marker, torch.load(good, weights_only=True))
    assert "pickled Python objects" in refused(capsys, marker, "predict", str(evil), str(audio))
    line = refused(capsys, marker, "predict", str(good), str(audio), "--ensemble", str(evil))
    assert "ensemble model 2 of 2" in line and "pickled Python objects" in line
    line = refused(capsys, marker, "export", str(evil), "--output", str(tmp_path / "out"))
    assert "pickled Python objects" in line


def test_model_folder_weights_and_config(tmp_path, marker, audio, capsys):
    good = write_checkpoint(tmp_path / "good.ckpt")
    ser_main(["export", str(good), "--output", str(tmp_path / "folder"), "--format", "hub"])
    folder = tmp_path / "folder"
    weights = folder / "model.safetensors"
    weights.write_bytes(pickle.dumps(Payload(marker)))  # a pickle under the safetensors name
    line = refused(capsys, marker, "predict", str(folder), str(audio))
    assert "model.safetensors: not a readable safetensors file" in line
    # config.json naming code to import outside ser: refused before anything is imported
    ser_main(["export", str(good), "--output", str(tmp_path / "f2"), "--format", "hub"])
    config = json.loads((tmp_path / "f2" / "config.json").read_text())
    config["net"]["class_path"] = "subprocess.Popen"
    (tmp_path / "f2" / "config.json").write_text(json.dumps(config))
    line = refused(capsys, marker, "predict", str(tmp_path / "f2"), str(audio))
    assert "net.class_path" in line and "it must come from ser.models" in line


def encoder_folder(tmp_path: Path, monkeypatch, weights: str | None) -> tuple[Path, Path]:
    """A model folder whose front-end is a SpeechEncoder on a tiny WAVLM_BASE_PLUS (its real
    weights in $TORCH_HOME), with ``weights`` as its stored weights path; and the checkpoint."""
    from ser.models import EncoderHead
    from ser.transforms import FeaturePipeline

    from .helpers import save_checkpoint

    write_encoder(monkeypatch, tmp_path / "torch", "WAVLM_BASE_PLUS")
    frontend = {"class_path": "ser.transforms.SpeechEncoder",
                "init_args": {"bundle": "WAVLM_BASE_PLUS"}}  # fmt: skip
    pipeline = FeaturePipeline(frontend, RATE).spec  # the hash of the real weights recorded
    pipeline["frontend"]["init_args"]["weights"] = weights
    net = EncoderHead(len(CLASSES), 16, RATE, hidden=0)
    (tmp_path / "run").mkdir()
    checkpoint = save_checkpoint(
        tmp_path / "run" / "enc.ckpt", net, "ser.models.EncoderHead", {"hidden": 0}, pipeline, 16
    )
    folder = tmp_path / "shared-model"
    ser_main(["export", str(checkpoint), "--output", str(folder), "--format", "hub"])
    return folder, checkpoint


def set_frontend(folder: Path, **init_args) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["pipeline"]["frontend"]["init_args"].update(init_args)
    (folder / "config.json").write_text(json.dumps(config))


def test_encoder_weights_a_model_folder_names(tmp_path, marker, audio, capsys, monkeypatch):
    from ser.pretrained import weights_hash

    folder, _ = encoder_folder(tmp_path, monkeypatch, None)
    evil = evil_torch_file(folder / "wavlm.pth", marker)
    # inside the folder, with the file's hash: read, with weights_only
    set_frontend(folder, weights="wavlm.pth", weights_sha256=weights_hash(evil))
    line = refused(capsys, marker, "predict", str(folder), str(audio))
    assert "wavlm.pth: not WAVLM_BASE_PLUS's weights" in line and "pickled Python" in line
    # a hash of null does not switch the check off
    set_frontend(folder, weights=None, weights_sha256=None)
    line = refused(capsys, marker, "predict", str(folder), str(audio))
    assert "pipeline.frontend.init_args.weights_sha256 is None" in line


def test_a_stored_path_outside_the_model_folder_is_not_read(
    tmp_path, marker, audio, capsys, monkeypatch, caplog
):
    folder, _ = encoder_folder(tmp_path, monkeypatch, None)
    outside = evil_torch_file(tmp_path / "elsewhere" / "wavlm.pth", marker)
    for stored in (str(outside), "../elsewhere/wavlm.pth", "~/wavlm.pth"):
        set_frontend(folder, weights=stored)
        ser_main(["predict", str(folder), str(audio)])  # torch.hub's file (hash-checked) instead
        assert not marker.exists()
        assert "is not in the model's folder: not read" in caplog.text
        caplog.clear()
    set_frontend(folder, weights=None, bundle=str(tmp_path / "elsewhere"))
    line = refused(capsys, marker, "predict", str(folder), str(audio))
    assert "pipeline.frontend.init_args.bundle" in line and "outside the model's folder" in line


def test_encoder_weights_outside_the_folder_only_when_the_user_names_them(
    tmp_path, marker, audio, capsys, monkeypatch
):
    from ser.pretrained import hub_file, weights_hash

    folder, checkpoint = encoder_folder(tmp_path, monkeypatch, None)
    elsewhere = tmp_path / "elsewhere" / "wavlm.pth"  # the only copy of the real weights
    elsewhere.parent.mkdir()
    hub_file("WAVLM_BASE_PLUS").rename(elsewhere)
    set_frontend(folder, weights=str(elsewhere))
    # stored in the model file: still not read (so the encoder has no weights here)
    line = refused(capsys, marker, "predict", str(folder), str(audio))
    assert "no weights for encoder WAVLM_BASE_PLUS" in line
    # named on the command line: read where it is, by predict, export and explain
    option = ["--encoder-weights", str(elsewhere)]
    ser_main(["predict", str(folder), str(audio), *option, "--output", str(tmp_path / "p.csv")])
    assert (tmp_path / "p.csv").read_text().count("clip.wav") == 1
    ser_main(["export", str(checkpoint), "-o", str(tmp_path / "ts"), "--format", "torchscript",
              *option])  # fmt: skip
    assert (tmp_path / "ts" / "model.ts").is_file()
    # still hash-checked, and read without running code
    evil = evil_torch_file(tmp_path / "evil.pth", marker)
    predict = ["predict", str(folder), str(audio), "--encoder-weights"]
    line = refused(capsys, marker, *predict, str(evil))
    assert "evil.pth: not the WAVLM_BASE_PLUS weights this model was trained with" in line
    set_frontend(folder, weights_sha256=weights_hash(evil))
    line = refused(capsys, marker, *predict, str(evil))
    assert "evil.pth: not WAVLM_BASE_PLUS's weights" in line and "pickled Python" in line
    line = refused(capsys, marker, *predict, "nope")
    assert line == "error: --encoder-weights nope: no such file"
    plain = write_checkpoint(tmp_path / "plain.ckpt")  # a front-end without encoder weights
    line = refused(capsys, marker, "predict", str(plain), str(audio), *option)
    assert f"{plain}: its front-end LogMel reads no encoder weights file" in line


def test_encoder_weights_the_user_gives(tmp_path, marker, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 15, 19), clips_per_emotion=1)
    write_encoder(monkeypatch, tmp_path / "torch", "WAVLM_BASE_PLUS")
    evil = evil_torch_file(tmp_path / "evil.pth", marker)
    monkeypatch.chdir(tmp_path)
    line = refused(
        capsys, marker, "fit", "--config", str(REPO / "configs" / "wavlm_base_plus.yaml"),
        "--data", RAVDESS_YAML, "--data.root", str(root), "--data.frontend.weights", str(evil),
    )  # fmt: skip
    assert "evil.pth: not WAVLM_BASE_PLUS's weights" in line and "pickled Python" in line


def test_torchscript_export_with_a_payload(tmp_path, marker, audio, capsys):
    good = write_checkpoint(tmp_path / "good.ckpt")
    ser_main(["export", str(good), "--output", str(tmp_path / "out"), "--format", "torchscript"])
    export = tmp_path / "out" / "model.ts"
    evil = tmp_path / "evil" / "model.ts"
    evil.parent.mkdir()
    shutil.copy(tmp_path / "out" / "classes.json", evil.parent)
    with zipfile.ZipFile(export) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():  # the archive's object pickle replaced by the payload
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(Payload(marker), protocol=2)
            dst.writestr(item, data)
    line = refused(capsys, marker, "predict", str(evil), str(audio))
    assert "not a TorchScript export torch can read" in line
    # an ONNX file name on a pickle: not a model ser reads
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(pickle.dumps(Payload(marker)))
    assert "not a ser checkpoint" in refused(capsys, marker, "predict", str(onnx), str(audio))


def test_distillation_teacher(tmp_path, marker, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=1)
    good = write_checkpoint(tmp_path / "t.ckpt")
    evil = evil_torch_file(tmp_path / "evil.ckpt", marker, torch.load(good, weights_only=True))
    monkeypatch.chdir(tmp_path)
    line = refused(
        capsys, marker, "fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
        *FAST, "--config", str(REPO / "configs" / "distill.yaml"),
        "--data.emotions", f"[{', '.join(CLASSES)}]",
        "--model.init_args.teachers", f"[{good}, {evil}]",
    )  # fmt: skip
    assert "--model.teachers" in line and "ensemble model 2 of 2" in line


def test_resume_and_test_checkpoints(tmp_path, marker, capsys, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess", actors=(15, 19), clips_per_emotion=1)
    good = write_checkpoint(tmp_path / "t.ckpt")
    evil = evil_torch_file(tmp_path / "evil.ckpt", marker, torch.load(good, weights_only=True))
    monkeypatch.chdir(tmp_path)
    args = ["--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST]
    line = refused(capsys, marker, "test", *args, "--ckpt_path", str(evil))
    assert "pickled Python objects" in line
    # what Lightning itself reads (--ckpt_path last, best) goes through ser's reader too
    with pytest.raises(SERError, match="pickled Python objects"):
        AtomicCheckpointIO().load_checkpoint(str(evil), weights_only=False)
    assert not marker.exists()


def test_manifest_and_config(tmp_path, marker, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(pickle.dumps(Payload(marker)))
    line = refused(
        capsys, marker, "fit", "--config", CONFIG, "--data",
        str(REPO / "configs" / "data" / "manifest.yaml"), "--data.manifest", str(manifest),
    )  # fmt: skip
    assert "m.csv" in line
    config = tmp_path / "evil.yaml"
    config.write_text(
        f"trainer:\n  max_epochs: !!python/object/apply:pathlib.Path.write_text [{marker}, x]\n"
    )
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(config.read_text())  # the YAML really is code under an unsafe loader
    with pytest.raises(SystemExit):
        ser_main(["fit", "--config", CONFIG, "--config", str(config), "--data", RAVDESS_YAML])
    assert not marker.exists()


def test_caches(tmp_path, marker, monkeypatch):
    """The caches under SER_CACHE_DIR: a teacher's outputs, a frozen encoder's features."""
    from ser.data.feature_cache import FeatureCache
    from ser.tasks.teacher import OutputCache

    teacher = write_checkpoint(tmp_path / "t.ckpt")
    cache = OutputCache(teacher, tmp_path / "teachers")
    evil_torch_file(cache.path, marker)
    assert OutputCache(teacher, tmp_path / "teachers").entries == {}  # ignored, not run
    features = FeatureCache({"frontend": "x"}, tmp_path / "features")
    wave = torch.zeros(1600)
    evil_torch_file(features.entry(wave), marker)
    computed = features.features(lambda w, n: (torch.ones(1, 3, 4), torch.tensor([4])), wave)
    assert computed.shape == (3, 4) and not marker.exists()


def test_audio_decode_cache(tmp_path, marker, capsys, caplog):
    """The decoded-audio cache (raw float32 and a JSON index, :mod:`ser.data.cache`): a cache
    file made into a pickle, given a pickle as its index, or made a torch archive is rebuilt
    with one warning, through the command that reads it; its code never runs."""
    from ser.data.cache import MAGIC
    from ser.io import cache_root

    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2), clips_per_emotion=1, seconds=0.5)
    args = ["explore", "--data", RAVDESS_YAML, "--data.root", str(root),
            "--out", str(tmp_path / "fig"), "--overwrite", "true"]  # fmt: skip
    ser_main(args)
    (cache,) = (cache_root() / "audio").glob("RAVDESS-*.cache")
    audio = cache.read_bytes()
    index = pickle.dumps(Payload(marker))
    crafted = {
        "a pickle": pickle.dumps(Payload(marker)),
        "a pickle as its index": audio[:64] + index + len(index).to_bytes(8, "little") + MAGIC,
        "a torch archive": evil_torch_file(tmp_path / "evil.pt", marker).read_bytes(),
    }
    for kind, content in crafted.items():
        cache.write_bytes(content)
        caplog.clear()
        ser_main(args)
        assert not marker.exists(), f"code ran from {kind}"
        warnings = [r.message for r in caplog.records if "unreadable audio cache" in r.message]
        assert len(warnings) == 1 and str(cache) in warnings[0], kind
        assert cache.read_bytes() == audio, kind  # rebuilt: the same decoded audio
    assert "RAVDESS" in capsys.readouterr().out


# --- the scan: no call in ser/ that would run code from a file -------------------------------


def unsafe_calls(source: str, filename: str) -> list[str]:
    """``file:line call`` of each ``torch.load`` without ``weights_only=True``, ``pickle.load``/
    ``loads``, ``yaml.load`` without a safe loader, ``yaml.unsafe_load``, ``eval``, ``exec``,
    ``torch.hub.load*``, ``numpy.load(allow_pickle=True)`` and ``trust_remote_code=True``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        bad = (
            (name.endswith("torch.load") and keywords.get("weights_only") != "True")
            or name in ("pickle.load", "pickle.loads", "cPickle.load", "eval", "exec")
            or name.startswith("torch.hub.load")
            or name.endswith("get_model")
            and "bundle" in name
            or (name == "yaml.load" and "Safe" not in keywords.get("Loader", ""))
            or name == "yaml.unsafe_load"
            or (name in ("np.load", "numpy.load") and keywords.get("allow_pickle") == "True")
            or keywords.get("trust_remote_code") == "True"
        )
        if bad:
            found.append(f"{filename}:{node.lineno} {ast.unparse(node)[:80]}")
    return found


def test_scan_finds_the_unsafe_calls():
    unsafe = """
import pickle, torch, yaml
torch.load(p)
torch.load(p, weights_only=False)
pickle.loads(b)
yaml.load(s)
eval("1")
torch.hub.load_state_dict_from_url(u)
bundle.get_model()
"""
    safe = """
torch.load(p, map_location="cpu", weights_only=True)
yaml.safe_load(s)
yaml.load(s, Loader=yaml.SafeLoader)
module.eval()
"""
    assert len(unsafe_calls(unsafe, "x.py")) == 7
    assert unsafe_calls(safe, "y.py") == []


def test_ser_has_no_call_that_runs_code_from_a_file():
    found = []
    for path in sorted((REPO / "ser").rglob("*.py")):
        found += unsafe_calls(path.read_text(), str(path.relative_to(REPO)))
    assert found == []
