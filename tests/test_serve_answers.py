"""What ``ser serve`` answers, computed in-process (no server): uploads through ``ser predict``'s
own path, bad audio as 4xx answers, windows of several requests in shared forward passes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.inference import load_model, predict_files
from ser.serve.answers import (
    Limits,
    Options,
    RequestError,
    answer,
    answer_clips,
    answer_files,
    clips_payload,
    parse_options,
    upload,
)

from .helpers import CLASSES, RATE, noise, write_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(write_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.ckpt"))


def wav(
    wave: np.ndarray, rate: int = RATE, format: str = "WAV", subtype: str | None = None
) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def test_an_upload_gets_ser_predicts_result(model, tmp_path: Path):
    wave = noise(5.0, rate=44100, channels=2, seed=3)
    path = tmp_path / "clip.flac"
    sf.write(path, wave, 44100)
    options = Options(window=2.0, hop=1.0, per_window=True, top_k=2)
    [result] = answer_files(model, [upload(path.read_bytes(), "clip.flac", options)], Limits())
    [expected] = predict_files(model, [path], 2.0, 1.0)
    assert result["status"] == 200
    body = result["body"]
    assert body["file"] == "clip.flac" and body["duration"] == pytest.approx(5.0, abs=1e-3)
    got = torch.tensor([body["probabilities"][c] for c in CLASSES])
    assert torch.allclose(got, expected.probabilities, atol=1e-6)
    assert body["emotion"] == CLASSES[int(expected.probabilities.argmax())]
    assert [w["start"] for w in body["windows"]] == [round(s, 3) for s in expected.starts]
    per_window = torch.tensor([[w["probabilities"][c] for c in CLASSES] for w in body["windows"]])
    assert torch.allclose(per_window, expected.window_probabilities, atol=1e-6)
    assert [t["emotion"] for t in body["top_k"]] == [
        CLASSES[i] for i in expected.probabilities.argsort(descending=True)[:2]
    ]


def test_windows_of_several_uploads_share_forward_passes(model, monkeypatch):
    calls = []
    forward = type(model.net).forward

    def counting(self, features, *args, **kwargs):
        calls.append(features.shape[0])
        return forward(self, features, *args, **kwargs)

    monkeypatch.setattr(type(model.net), "forward", counting)
    options = Options(window=1.0, hop=1.0)
    payloads = [upload(wav(noise(3.0, seed=s)), f"{s}.wav", options) for s in range(3)]
    results = answer_files(model, payloads, Limits(), batch_size=16)
    assert [r["status"] for r in results] == [200, 200, 200]
    assert calls == [9]  # 3 uploads x 3 windows of 1 s: one forward pass
    singles = [answer_files(model, [p], Limits())[0]["body"]["probabilities"] for p in payloads]
    for result, single in zip(results, singles, strict=True):
        assert result["body"]["probabilities"] == pytest.approx(single, abs=1e-6)


#: What each bad upload is answered: status and how the error starts.
MAX_BYTES, MAX_SECONDS = 100_000, 2.5


def bad_uploads() -> list[tuple[str, bytes, int, str]]:
    t = np.arange(RATE) / RATE
    nan = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    nan[100] = np.nan
    return [
        ("junk.wav", b"this is not audio" * 10, 422, "junk.wav: not a readable audio file"),
        ("empty.wav", b"", 400, "empty.wav: no audio in the request"),
        ("header.wav", wav(np.zeros(0, np.float32)), 422, "header.wav: holds no samples"),
        ("nan.wav", wav(nan, subtype="FLOAT"), 422, "nan.wav: holds NaN or infinite samples"),
        ("silent.wav", wav(np.zeros(RATE, np.float32)), 422, "silent.wav: silent or constant"),
        ("short.wav", wav(noise(0.1)), 422, "short.wav: 0.1 s of audio, too short"),
        ("long.flac", wav(noise(3.0), format="FLAC"), 413,
         "long.flac: 3.0 s of audio; this server takes at most 2.5 s"),
        ("big.wav", b"x" * (MAX_BYTES + 1), 413,
         f"big.wav: {MAX_BYTES + 1} bytes; this server takes at most {MAX_BYTES} bytes"),
    ]  # fmt: skip


def test_bad_audio_is_a_4xx_answer_naming_the_problem_and_spares_the_others(model):
    limits = Limits(max_bytes=MAX_BYTES, max_seconds=MAX_SECONDS)
    good = upload(wav(noise(2.0)), "good.wav", Options())
    bad = bad_uploads()
    payloads = [good] + [upload(data, name, Options()) for name, data, *_ in bad] + [good]
    results = answer(model, payloads, limits)
    assert results[0]["status"] == results[-1]["status"] == 200
    for (name, _, status, fragment), result in zip(bad, results[1:-1], strict=True):
        assert result["status"] == status, (name, result)
        assert result["error"].startswith(fragment), (name, result["error"])
        assert "ser-serve-" not in result["error"] and "/tmp" not in result["error"]


def test_answers_name_the_clients_file_never_a_path(model):
    [result] = answer_files(model, [upload(b"junk", "/home/someone/secret/x.wav", Options())],
                            Limits())  # fmt: skip
    assert result["error"].startswith("x.wav: ") and "/" not in result["error"].split("(")[0]
    [result] = answer_files(model, [upload(wav(noise(1.0)), "C:\\Users\\a\\b.wav", Options())],
                            Limits())  # fmt: skip
    assert result["body"]["file"] == "b.wav"


def test_options_suiting_no_model_are_a_400(model):
    [result] = answer_files(model, [upload(wav(noise(1.0)), "a.wav", Options(window=0.01))],
                            Limits())  # fmt: skip
    assert result["status"] == 400 and "--window" in result["error"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"window": "-1"}, "window='-1': give a positive number"),
        ({"hop": "nan"}, "hop='nan': give a positive number"),
        ({"hop": "x"}, "hop='x': give a positive number"),
        ({"top_k": "0"}, "top_k='0': give a whole number"),
        ({"per_window": "maybe"}, "per_window='maybe': give true or false"),
        ({"segments": "all"}, "segments='all': use windows or vad"),
        ({"path": "/etc/passwd"}, "unknown option 'path'"),
    ],
)
def test_bad_options_are_a_400_naming_them(fields, fragment):
    with pytest.raises(RequestError, match=fragment) as caught:
        parse_options(fields)
    assert caught.value.status == 400


def test_options_are_read_from_query_fields():
    options = parse_options({"window": "2.5", "hop": "0.5", "per-window": "true", "top_k": "1"})
    assert options == Options(window=2.5, hop=0.5, per_window=True, top_k=1)


def test_live_windows_get_the_probabilities_of_predict(model):
    clips = [noise(1.0, seed=s) for s in range(3)]
    results = answer_clips(model, [clips_payload(clips[:2]), clips_payload(clips[2:])])
    with torch.inference_mode():
        expected = model(torch.from_numpy(np.stack(clips))).softmax(-1)
    got = torch.tensor(results[0]["probabilities"] + results[1]["probabilities"])
    assert torch.allclose(got, expected, atol=1e-6)
    short = clips_payload([noise(1.0)[:80]])  # 5 ms: too short for the net, and only its error
    too_short, fine = answer_clips(model, [short, clips_payload(clips[:1])])
    assert too_short["status"] == 400 and "window (0.005 s)" in too_short["error"]
    assert fine["probabilities"][0] == pytest.approx(results[0]["probabilities"][0], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines in: give --api-key"),
        (["--host", "192.168.1.5", "--api-key", "k"], "--host 192.168.1.5: use 127.0.0.1"),
        (["--port", "80"], "--port 80: use a port from 1024"),
    ],
)
def test_serve_refuses_unsafe_or_impossible_settings(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.delenv("SER_API_KEY", raising=False)
    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt")
    with pytest.raises(SystemExit) as caught:
        ser_main(["serve", str(checkpoint), *args])
    assert caught.value.code == 2
    assert fragment in capsys.readouterr().err


def test_an_export_and_an_ensemble_are_answered_and_described(model, tmp_path: Path):
    from ser.inference import load_models
    from ser.inference.export import export_torchscript
    from ser.serve.server import describe

    exported = export_torchscript(model, tmp_path / "model.ts")
    other = write_checkpoint(tmp_path / "other.ckpt", seed=1)
    clip = tmp_path / "clip.wav"
    sf.write(clip, noise(3.0, seed=2), RATE)
    for paths, kinds in (
        ([exported], ["torchscript"]),
        ([exported, other], ["torchscript", "checkpoint"]),
    ):
        served = load_models(paths)
        info = describe(served, [str(p) for p in paths])
        assert [m["kind"] for m in info["members"]] == kinds
        assert info["models"] == [p.name for p in paths] and info["class_names"] == CLASSES
        [result] = answer_files(
            served, [upload(clip.read_bytes(), "clip.wav", Options())], Limits()
        )
        [expected] = predict_files(served, [clip])
        got = [result["body"]["probabilities"][c] for c in CLASSES]
        assert got == pytest.approx(expected.probabilities.tolist(), abs=1e-6)
