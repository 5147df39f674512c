"""Load test of ``ser serve`` on loopback: requests/s and latency percentiles for 3-s clips at
concurrency 1, 8 and 32, batching across requests on and off; 60-s recordings; the server's memory
over a soak of many requests; the live endpoint's latency; and ``ser predict`` on the same files.

    python benchmarks/serve_load.py [--model CKPT] [--audio FOLDER] [--requests 192] [--soak 2000]

MODEL: a checkpoint; by default the default CNN2D (configs/cnn2d.yaml) trained for one short epoch
on the demo corpus (speed does not depend on the weights). FOLDER: recordings to crop to 3 s (e.g.
RAVDESS); by default synthetic speech-like clips. Every request goes to 127.0.0.1; every loop is
bounded in count and time. Prints one table per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import Server, speech_like  # noqa: E402  (a server on a free loopback port)

CLIP_SECONDS, LONG_SECONDS = 3.0, 60.0


def default_model(folder: Path) -> Path:
    """The default CNN2D, one short epoch on the demo corpus: its architecture and front-end."""
    subprocess.run(
        [sys.executable, "-m", "ser", "fit", "--config", str(REPO / "configs" / "cnn2d.yaml"),
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir",
         str(folder)],
        cwd=folder, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return next(folder.rglob("last.ckpt"))


def clips(audio: Path | None, n: int, seconds: float, rate: int = 16000) -> list[bytes]:
    """``n`` WAV files of ``seconds``: crops of the recordings in ``audio`` or synthetic speech."""
    waves = []
    if audio is not None:
        for path in sorted(audio.rglob("*.wav")):
            wave, file_rate = sf.read(path, dtype="float32", always_2d=True)
            if len(wave) >= seconds * file_rate:
                waves.append((wave[: int(seconds * file_rate)].mean(1), file_rate))
            if len(waves) == n:
                break
    while len(waves) < n:
        waves.append((speech_like(seconds, rate, seed=len(waves)), rate))
    out = []
    for wave, file_rate in waves:
        buffer = io.BytesIO()
        sf.write(buffer, wave, file_rate, format="WAV")
        out.append(buffer.getvalue())
    return out


async def post(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    """One ``POST`` on a kept-alive HTTP/1.1 connection: (status, body)."""
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(port: int, bodies: list[bytes], requests: int, concurrency: int) -> dict:
    """``requests`` POSTs cycling through ``bodies`` from ``concurrency`` connections."""
    latencies: list[float] = []
    errors = 0
    sent = 0

    async def client() -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < requests:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(post(reader, writer, "/predict", body), 120)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - start)
                errors += status != 200
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": requests, "concurrency": concurrency, "rps": requests / wall,
        "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
        "errors": errors,
    }  # fmt: skip


def rss_mib(pid: int) -> float:
    """Resident memory (MiB) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def soak(server: Server, bodies: list[bytes], requests: int, samples: int = 8) -> list:
    """RSS of the server's processes after each ``requests / samples`` requests (concurrency 8)."""
    rows = [(0, rss_mib(server.process.pid), 0)]
    for k in range(1, samples + 1):
        result = await load(server.port, bodies, requests // samples, 8)
        rows.append((k * (requests // samples), rss_mib(server.process.pid), result["errors"]))
    return rows


async def live_latency(port: int, wave: np.ndarray, rate: int, window: float, hop: float) -> list:
    """Seconds from sending the chunk that ends each window to receiving its answer; the audio
    is sent in real time, in 0.1-s chunks, as the page's microphone sends it."""
    import websockets

    chunk = rate // 10
    sent_at: list[tuple[int, float]] = []
    latencies = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/live", open_timeout=30) as ws:
        await ws.send(json.dumps({"sample_rate": rate, "window": window, "hop": hop}))
        json.loads(await ws.recv())

        async def receive() -> None:
            expected = int((len(wave) / rate - window) / hop) + 1
            for _ in range(expected):
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                end = round(answer["end"] * rate)
                sent = next(t for n, t in sent_at if n >= end)
                latencies.append(time.perf_counter() - sent)

        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for i, at in enumerate(range(0, len(wave), chunk)):
            await asyncio.sleep(max(0.0, start + i * 0.1 - time.perf_counter()))
            await ws.send(wave[at : at + chunk].astype("<f4").tobytes())
            sent_at.append((at + len(wave[at : at + chunk]), time.perf_counter()))
        await asyncio.wait_for(receiver, 60)
    return latencies


def predict_throughput(model: Path, bodies: list[bytes], folder: Path) -> tuple[float, float]:
    """``ser predict`` on the same clips: files/s in-process (model loaded) and from the command
    line (process start included)."""
    from ser.inference import load_model, predict_files

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, body in enumerate(bodies):
        paths.append(folder / f"clip{i:04d}.wav")
        paths[-1].write_bytes(body)
    loaded = load_model(model)
    predict_files(loaded, paths[:8])  # warm-up
    best = min(timed(lambda: predict_files(loaded, paths)) for _ in range(3))  # best of 3
    command = timed(lambda: subprocess.run(
        [sys.executable, "-m", "ser", "predict", str(model), str(folder), "--output",
         str(folder / "out.csv")], check=True, capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ))  # fmt: skip
    return len(paths) / best, len(paths) / command


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in [h, *(r[i] for r in rows)]) for i, h in enumerate(header)]
    for row in [header, *rows]:
        print("  ".join(f"{x!s:>{w}}" for x, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a checkpoint (default: the default CNN2D)")
    parser.add_argument("--audio", type=Path, help="recordings to crop to 3 s")
    parser.add_argument("--requests", type=int, default=192, help="requests per load level")
    parser.add_argument("--soak", type=int, default=2000, help="requests of the memory soak")
    parser.add_argument("--max-batch-size", type=int, default=16, help="batching on: requests "
                        "answered together")  # fmt: skip
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    parser.add_argument("--workers", type=int, default=1, help="inference workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or default_model(tmp)
        bodies = clips(args.audio, 64, CLIP_SECONDS)
        long_bodies = clips(None, 4, LONG_SECONDS)
        load_rows, long_rows, soak_rows, live = [], [], [], []
        for batching in ("on", "off"):
            size = args.max_batch_size if batching == "on" else 1
            server = Server(model, "--max-batch-size", str(size), "--batch-timeout",
                            str(args.batch_timeout), "--workers", str(args.workers),
                            cwd=tmp).start()  # fmt: skip
            try:
                asyncio.run(load(server.port, bodies, 16, 4))  # warm-up
                for concurrency in (1, 8, 32):
                    r = asyncio.run(load(server.port, bodies, args.requests, concurrency))
                    load_rows.append([batching, concurrency, r["requests"], f"{r['rps']:.1f}",
                                      f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{r['p99']:.0f}",
                                      r["errors"]])  # fmt: skip
                for concurrency in (1, 4):
                    r = asyncio.run(load(server.port, long_bodies, 8, concurrency))
                    long_rows.append([batching, concurrency, r["requests"], f"{r['rps']:.2f}",
                                      f"{r['p50']:.0f}", f"{r['p99']:.0f}", r["errors"]])  # fmt: skip
                if batching == "on":
                    soak_rows = asyncio.run(soak(server, bodies, args.soak))
                    wave = speech_like(12.0, 16000, seed=99)
                    live = asyncio.run(live_latency(server.port, wave, 16000, 2.0, 1.0))
            finally:
                server.stop()
        in_process, command = predict_throughput(model, bodies, tmp / "files")
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")  # fmt: skip
    print(f"ser serve load test: {model.name}, {os.cpu_count()} CPUs ({cpu}), "
          f"batching on = --max-batch-size {args.max_batch_size} --batch-timeout "
          f"{args.batch_timeout}, --workers {args.workers} (OMP_NUM_THREADS=1 each), "
          f"{len(bodies)} distinct {CLIP_SECONDS:g}-s clips")  # fmt: skip
    table(f"{CLIP_SECONDS:g}-s clips (latency in ms)",
          ["batching", "concurrency", "requests", "req/s", "p50", "p95", "p99", "errors"],
          load_rows)  # fmt: skip
    table(
        f"{LONG_SECONDS:g}-s recordings (latency in ms)",
        ["batching", "concurrency", "requests", "req/s", "p50", "p99", "errors"],
        long_rows,
    )
    table(
        "server memory over the soak (batching on, concurrency 8; all its processes)",
        ["requests", "RSS MiB", "errors"],
        [[n, f"{m:.0f}", e] for n, m, e in soak_rows],
    )
    ms = sorted(1000 * x for x in live)
    table("live /live: end of a window's audio (real-time 0.1-s chunks) to its answer, ms",
          ["windows", "median", "p95", "max"],
          [[len(ms), f"{statistics.median(ms):.0f}", f"{np.percentile(ms, 95):.0f}",
            f"{max(ms):.0f}"]])  # fmt: skip
    table(f"ser predict on the same {len(bodies)} clips (files/s)",
          ["in-process (model loaded, best of 3)", "command line (process start included)"],
          [[f"{in_process:.1f}", f"{command:.1f}"]])  # fmt: skip


if __name__ == "__main__":
    main()
