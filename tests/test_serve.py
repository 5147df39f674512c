"""``ser serve`` as a client meets it: a real server (LitServe) on 127.0.0.1 and a free port,
serving a model trained on a toy corpus. Every request loop here is bounded."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.__main__ import main as ser_main

from .helpers import (
    CLASSES,
    RATE,
    Server,
    fit,
    multipart,
    noise,
    speech_like,
    tone,
    write_ravdess,
)

pytest.importorskip("litserve", reason="ser serve needs the serve extra: pip install 'ser[serve]'")

KEY = "test-key-5b1e"
#: The module server's limits, small enough to reach in a test.
MAX_BYTES, MAX_SECONDS, TIMEOUT, MAX_QUEUE = 3_000_000, 30.0, 3.0, 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint ``ser fit`` trained (2 epochs, calibrated) on a toy RAVDESS."""
    tmp = tmp_path_factory.mktemp("serve")
    root = write_ravdess(tmp / "ravdess", clips_per_emotion=2, seconds=1.3)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("SER_CACHE_DIR", str(tmp / "cache"))
        fit(root, "--trainer.max_epochs", "2", "--data.emotions", f"[{', '.join(CLASSES)}]")
    return tmp / "lightning_logs" / "cnn2d" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """A server with a key, small limits and batching (up to 4 requests together)."""
    server = Server(
        trained, "--max-bytes", str(MAX_BYTES), "--max-seconds", str(MAX_SECONDS), "--timeout",
        str(TIMEOUT), "--max-queue", str(MAX_QUEUE), "--max-batch-size", "4",
        "--batch-timeout", "0.05", key=KEY, cwd=tmp_path_factory.mktemp("server"),
    )  # fmt: skip
    yield server.start()
    server.stop()


def audio(wave: np.ndarray, rate: int = RATE, format: str = "WAV", subtype=None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def test_health_info_and_page(server):
    assert server.get("/health") == (200, b"ok")
    status, body = server.get("/info")
    model = json.loads(body)["model"]
    assert status == 200 and model["class_names"] == CLASSES and model["sample_rate"] == RATE
    assert model["members"][0]["net"] == "ser.models.cnn2d.CNN2D"
    assert model["models"] == ["last.ckpt"] and str(server.model.parent) not in body.decode()
    status, page = server.get("/", key=False)  # the page itself holds no data: no key needed
    assert status == 200 and b'<script src="/page/app.js">' in page
    assert server.get("/page/app.js", key=False)[0] == 200
    assert server.get("/page/../server.py", key=False)[0] == 404
    status, body = server.get("/openapi.json")
    predict = json.loads(body)["paths"]["/predict"]["post"]
    assert status == 200 and "multipart/form-data" in predict["requestBody"]["content"]
    assert {"window", "hop", "per_window"} <= {p["name"] for p in predict["parameters"]}


def test_predictions_equal_ser_predicts(server, trained, tmp_path: Path):
    files = {
        "a.wav": (noise(3.0, seed=1), RATE),
        "b.flac": (noise(6.5, rate=44100, channels=2, seed=2), 44100),
        "c.ogg": (noise(0.7, rate=22050, seed=3), 22050),
    }
    for name, (wave, rate) in files.items():
        sf.write(tmp_path / name, wave, rate)
    out = tmp_path / "out.json"
    ser_main(["predict", str(trained), *(str(tmp_path / f) for f in files), "--window", "2",
              "--hop", "0.5", "--per-window", "--output", str(out)])  # fmt: skip
    expected = json.loads(out.read_text())
    for i, name in enumerate(files):
        data = (tmp_path / name).read_bytes()
        if i % 2:  # multipart, options as form fields
            body, headers = multipart(
                {"window": "2", "hop": "0.5", "per_window": "true"}, name, data
            )
            status, got = server.predict(body, headers=headers)
        else:  # the raw file as the body, options in the query
            status, got = server.predict(data, f"name={name}&window=2&hop=0.5&per_window=true")
        assert status == 200, got
        rows = [r for r in expected if r["file"] == str(tmp_path / name)]
        assert got["file"] == name and got["emotion"] == rows[0]["emotion"]
        assert got["ood_score"] == rows[0]["ood_score"] is not None  # fitted after training
        want = [[r["probabilities"][c] for c in CLASSES] for r in rows]
        have = [[got["probabilities"][c] for c in CLASSES]] + [
            [w["probabilities"][c] for c in CLASSES] for w in got["windows"]
        ]
        np.testing.assert_allclose(have, want, atol=1e-5, rtol=0)


def test_every_endpoint_but_the_page_needs_the_key(server):
    data = audio(noise(1.0))
    for path in ("/health", "/info"):
        status, body = server.get(path, key=False)
        assert status == 401 and "API key" in json.loads(body)["error"]
    status, body = server.predict(data, key=False)
    assert status == 401 and "X-API-Key" in body["error"]
    assert server.predict(data, key=False, headers={"X-API-Key": KEY[:-1] + "x"})[0] == 401
    assert server.predict(data, key=False, headers={"Authorization": f"Bearer {KEY}"})[0] == 200


def test_bad_requests_get_4xx_json_and_the_server_keeps_answering(server):
    t = np.arange(RATE) / RATE
    nan = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    nan[5] = np.inf
    form, form_headers = multipart({"window": "2"}, "x.wav", b"")
    no_file = form.replace(b'name="file"; filename="x.wav"', b'name="other"')
    cases = [
        (b"not audio at all" * 4, "name=/srv/secret/x.wav", {}, 422, "x.wav: not a readable audio file"),
        (b"", "", {}, 400, "upload: no audio in the request"),
        (audio(np.zeros(0, np.float32)), "", {}, 422, "upload: holds no samples"),
        (audio(nan, subtype="FLOAT"), "", {}, 422, "upload: holds NaN or infinite samples"),
        (audio(np.zeros(RATE, np.float32)), "", {}, 422, "upload: silent or constant"),
        (audio(noise(0.1)), "", {}, 422, "upload: 0.1 s of audio, too short"),
        (audio(noise(31.0), format="FLAC"), "", {}, 413, "upload: 31.0 s of audio; this server takes at most 30 s"),
        (b"\0" * (MAX_BYTES + 1), "", {}, 413, f"the upload is larger than this server's limit of {MAX_BYTES}"),
        (audio(noise(1.0)), "window=-2", {}, 400, "window='-2': give a positive number"),
        (audio(noise(1.0)), "file=/etc/passwd", {}, 400, "unknown option 'file'"),
        (no_file, "", form_headers, 400, "no audio in the form"),
        (b"--nope\r\n", "", form_headers, 400, ""),
    ]  # fmt: skip
    good = audio(noise(2.0, seed=7))
    for data, query, headers, status, fragment in cases:
        got_status, got = server.predict(data, query, headers=headers)
        assert (got_status, got["error"][: len(fragment)]) == (status, fragment), got
        assert "/tmp" not in got["error"] and "ser-serve-" not in got["error"]
        assert server.predict(good, "name=good.wav")[0] == 200  # still answering


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server):
    clips = [audio(noise(3.0, seed=s)) for s in range(4)]
    alone = [server.predict(c, "hop=1")[1]["probabilities"] for c in clips]
    together: dict[int, dict] = {}

    def send(i: int) -> None:
        together[i] = server.predict(clips[i], "hop=1")[1]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(4):
        got = [together[i]["probabilities"][c] for c in CLASSES]
        np.testing.assert_allclose(got, [alone[i][c] for c in CLASSES], atol=1e-5)


def test_live_answers_every_hop_with_the_windows_probabilities(server):
    websockets = pytest.importorskip("websockets.sync.client")
    from ser.audio import Windower
    from ser.inference import clip_probabilities, load_model

    wave = noise(3.2, seed=5)
    url = server.url.replace("http", "ws") + "/live"
    answers = []
    with websockets.connect(url, open_timeout=30, close_timeout=5) as ws:
        ws.send(json.dumps({"sample_rate": RATE, "window": 1.0, "hop": 0.5, "key": KEY}))
        assert json.loads(ws.recv(30))["ready"]
        for start in range(0, len(wave), 1600):  # 0.1-s chunks, as the page sends them
            ws.send(wave[start : start + 1600].astype("<f4").tobytes())
        while len(answers) < 5:
            answers.append(json.loads(ws.recv(30)))
        ws.send(json.dumps({"end": True}))
    import torch

    windows = Windower(RATE, 1.0, 0.5).push(torch.from_numpy(wave))
    assert [(a["start"], a["end"]) for a in answers] == [
        (s / RATE, e / RATE) for s, e, _ in windows
    ]
    expected = clip_probabilities(load_model(server.model), [c for *_, c in windows], "cpu")
    np.testing.assert_allclose([a["probabilities"] for a in answers], expected, atol=1e-5)
    np.testing.assert_allclose(answers[-1]["running"], expected.mean(0), atol=1e-5)


def test_live_refuses_a_wrong_key_a_wrong_rate_and_nan(server):
    websockets = pytest.importorskip("websockets.sync.client")
    url = server.url.replace("http", "ws") + "/live"
    for start, fragment in (
        ({"sample_rate": RATE, "key": "wrong"}, "needs its API key"),
        ({"sample_rate": 8000, "key": KEY}, "send the samples at the model's 16000 Hz"),
    ):
        with websockets.connect(url, open_timeout=30) as ws:
            ws.send(json.dumps(start))
            assert fragment in json.loads(ws.recv(30))["error"]
    with websockets.connect(url, open_timeout=30) as ws:  # samples that are not numbers
        ws.send(json.dumps({"sample_rate": RATE, "key": KEY}))
        assert json.loads(ws.recv(30))["ready"]
        ws.send(np.full(1600, np.nan, "<f4").tobytes())
        assert json.loads(ws.recv(30)) == {
            "error": "the audio holds NaN or infinite samples",
            "status": 422,
        }
    assert server.get("/health")[0] == 200


def chromium() -> str:
    """Debian's Chromium and Playwright to drive it, or skip saying what is missing."""
    import shutil

    pytest.importorskip("playwright.sync_api", reason="the page test needs playwright (ser[dev])")
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("the page test needs Chromium: apt-get install chromium")
    return found


def test_the_page_scores_a_file_a_recording_and_the_live_microphone(server, tmp_path):
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    microphone = tmp_path / "microphone.wav"  # Chromium's fake capture device plays it in a loop
    sf.write(microphone, speech_like(4.0, 48000, seed=4), 48000, subtype="PCM_16")
    clip = tmp_path / "clip.wav"  # the toy corpus's neutral, sad then angry tones
    rng = np.random.default_rng(6)
    sf.write(
        clip, np.concatenate([tone(f, 5 / 3, RATE, rng) for f in (220.0, 880.0, 1760.0)]), RATE
    )
    _, expected = server.predict(clip.read_bytes(), "window=2&hop=1&per_window=true")
    flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-audio-capture={microphone}",
             "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=flags, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.set_default_timeout(30_000)
            page.goto(server.url + "/")
            expect(page.locator("#keybox")).to_be_visible()  # /info answered 401
            page.fill("#key", KEY)
            page.click("#usekey")
            expect(page.locator("#model")).to_contain_text(", ".join(CLASSES))

            page.set_input_files("#file", str(clip))  # a file
            expect(page.locator("#source")).to_contain_text("file: clip.wav, 5 s")
            assert page.text_content("#emotion") == expected["emotion"]
            bars = page.locator(".bar")
            shown = {
                bars.nth(i).get_attribute("data-cls"): float(
                    bars.nth(i).get_attribute("data-probability")
                )
                for i in range(bars.count())
            }
            assert shown == pytest.approx(expected["probabilities"], abs=1e-6)
            windows = page.get_attribute("#result", "data-windows")
            assert windows == str(len(expected["windows"])) == "4"

            page.click("#record")  # the microphone, recorded then sent as WAV
            expect(page.locator("#record")).to_have_text("Stop")
            page.wait_for_timeout(1500)
            page.click("#record")
            expect(page.locator("#source")).to_contain_text("microphone: recording.wav")
            seconds = float(page.text_content("#source").split(", ")[-1].split()[0])
            assert 1.0 < seconds < 4.0

            page.click("#live")  # the microphone, live: an answer every hop
            expect(page.locator("#source")).to_contain_text("live, 2 windows", timeout=30_000)
            latency = float(page.get_attribute("#status", "data-latency"))
            assert 0 < latency < 5000
            page.click("#live")
            expect(page.locator("#status")).to_contain_text("Live stopped after")
            page.set_input_files("#file", str(clip))  # the last view: a file's timeline
            expect(page.locator("#source")).to_contain_text("file: clip.wav")
            page.screenshot(path=os.environ.get("SER_PAGE_SCREENSHOT", tmp_path / "page.png"))
        finally:
            browser.close()
    assert server.get("/health")[0] == 200


def heavy(seconds: float = 28.0) -> bytes:
    return audio(noise(seconds, seed=9), format="FLAC")


@pytest.mark.slow  # a minute here: the work the timed-out requests leave
def test_a_request_over_the_timeout_gets_504_and_a_full_queue_503(server):
    # 28 s cut into 2-s windows every 0.01 s: ~2,600 windows, several times TIMEOUT of work
    status, body = server.predict(heavy(), "window=2&hop=0.01", timeout=60)
    assert status == 504 and f"no answer within {TIMEOUT:g} s" in body["error"]
    results: list[tuple[int, dict]] = []
    clip = heavy(6.0)

    def send() -> None:
        status, headers, _ = server.request("POST", "/predict?window=2&hop=0.05", clip, timeout=60)
        results.append((status, headers))

    threads = [threading.Thread(target=send) for _ in range(MAX_QUEUE + 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    full = [headers for status, headers in results if status == 503]
    assert len(full) >= 3 and all(h.get("retry-after") == "1" for h in full), results
    deadline = time.monotonic() + 120  # the worker finishes what it took, then answers again
    while server.predict(audio(noise(1.0)), timeout=60)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(1)


@pytest.mark.slow  # a server of its own: start and graceful stop
def test_sigterm_finishes_the_request_in_flight_then_exits(trained, tmp_path):
    server = Server(trained, cwd=tmp_path).start()
    answered: list = []

    def send() -> None:  # ~1,200 windows: a second or more of work
        answered.append(server.predict(heavy(25.0), "window=0.5&hop=0.02", timeout=60))
        answered.append(time.monotonic())

    try:
        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(0.5)
        stopped_at = time.monotonic()
        server.process.terminate()
        thread.join(60)
        assert server.process.wait(60) == 0, server.output()
    finally:
        server.stop()
    (status, body), answered_at = answered
    assert status == 200 and body["duration"] == pytest.approx(25.0), body
    assert answered_at > stopped_at  # it was in flight when SIGTERM came
