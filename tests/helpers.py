"""What the tests share: tiny corpora in each corpus's real layout and file naming, a checkpoint
in the layout ``ser fit`` writes, and the command line run in-process on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.__main__ import main as ser_main
from ser.cli import main
from ser.models import CNN2D
from ser.spec import SPEC_KEY, SPEC_VERSION
from ser.transforms import FeaturePipeline

REPO = Path(__file__).resolve().parents[1]


RAVDESS_16K = REPO.parent / "shared" / "data" / "ravdess-16k"
EMODB_2S = REPO.parent / "shared" / "data" / "emodb-2s"


#: emotion code -> tone frequency of the toy corpus: a learnable, known answer.
TONES = {"01": 220.0, "03": 440.0, "04": 880.0, "05": 1760.0}


def tone(freq: float, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_ravdess(
    root: Path,
    actors=(1, 2, 15, 16, 19, 20),
    clips_per_emotion: int = 2,
    sample_rate: int = 16000,
    seconds: float = 0.6,
    ext: str = "wav",
) -> Path:
    """A toy RAVDESS: ``Actor_XX/03-01-EE-01-SS-01-XX.<ext>``, one tone per emotion."""
    rng = np.random.default_rng(0)
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for code, freq in TONES.items():
            for k in range(clips_per_emotion):
                name = f"03-01-{code}-01-{k % 2 + 1:02d}-{k // 2 + 1:02d}-{actor:02d}.{ext}"
                sf.write(
                    folder / name,
                    tone(freq * (1 + 0.005 * actor), seconds, sample_rate, rng),
                    sample_rate,
                )
    return root


def write_tone(path: Path, freq: float = 440.0, seconds: float = 0.3, sample_rate: int = 16000,
               seed: int = 0) -> Path:  # fmt: skip
    """A short noisy tone at ``path`` (folders created): a valid, distinct clip in any naming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds, sample_rate, np.random.default_rng(seed)), sample_rate)
    return path


def write_corpus(root: Path, names: list[str], freqs: dict[str, float] | None = None) -> Path:
    """Write one tone per relative path in ``names``; ``freqs`` maps a name part to its tone."""
    for i, name in enumerate(names):
        freq = next((f for k, f in (freqs or {}).items() if k in name), 300.0 + 7 * i)
        write_tone(root / name, freq * (1 + 0.001 * i), seed=i)
    return root


CONFIG = str(REPO / "configs" / "cnn2d.yaml")


RAVDESS_YAML = str(REPO / "configs" / "data" / "ravdess.yaml")


FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--data.batch_size", "4", "--data.max_seconds", "0.5",
        "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]']  # fmt: skip


def fit(root: Path, *extra: str):
    """``ser fit`` of cnn2d.yaml on a toy RAVDESS at ``root``, fast; returns the CLI."""
    return main(
        ["fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST, *extra]
    )


CLASSES = ["neutral", "happy", "sad", "angry"]


RATE = 16000


#: Front-end specs of the small test checkpoints.
LOGMEL = {"class_path": "ser.transforms.LogMel", "init_args": {"n_mels": 32}}
MFCC = {"class_path": "ser.transforms.MFCC", "init_args": {"n_mels": 32, "n_mfcc": 16}}


def write_checkpoint(
    path: Path,
    frontend: dict = LOGMEL,
    seed: int = 0,
    denoise: dict | None = None,
    class_names: list[str] = CLASSES,
) -> Path:
    """A checkpoint in the layout ``ser fit`` writes, with a tiny randomly initialised CNN2D.

    Batch-norm statistics are randomised and the last layer scaled, so logits vary with the input.
    """
    torch.manual_seed(seed)
    pipeline = {"frontend": frontend, "denoise": denoise}
    n_features = FeaturePipeline.from_spec(pipeline, RATE).n_features
    init_args = {"channels": [4, 8], "convs_per_block": 1}
    net = CNN2D(len(class_names), n_features, RATE, **init_args)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.2, 2.0)
            module.weight.data.normal_(1, 0.5)
    net.head[-1].weight.data *= 20  # confident, input-dependent logits
    return save_checkpoint(
        path, net, "ser.models.CNN2D", init_args, pipeline, n_features, class_names
    )


def save_checkpoint(
    path: Path,
    net: torch.nn.Module,
    class_path: str,
    init_args: dict,
    pipeline: dict,
    n_features: int,
    class_names: list[str] = CLASSES,
) -> Path:
    """Save ``net`` in the layout ``ser fit`` writes: Lightning's ``state_dict`` (with a metric
    entry inference must ignore) and the spec that rebuilds the model."""
    checkpoint = {
        "epoch": 3,
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}
        | {"metrics.val_metrics.x": torch.zeros(1)},
        SPEC_KEY: {
            "version": SPEC_VERSION, "class_names": class_names, "sample_rate": RATE,
            "n_features": n_features, "pipeline": pipeline,
            "net": {"class_path": class_path, "init_args": init_args}, "corpus": None,
        },
    }  # fmt: skip
    torch.save(checkpoint, path)
    return path


def noise(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise with a moving tone, so different windows really differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)
    wave = tone[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    return wave.astype(np.float32).squeeze()


AESDD_FOLDERS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "s": "sadness"}


def write_aesdd(root: Path) -> Path:
    names = [f"{folder}/{c}0{u} ({spk}).wav" for c, folder in AESDD_FOLDERS.items()
             for spk in range(1, 6) for u in (1, 2)]  # fmt: skip
    return write_corpus(root, names)


CREMA_CODES = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def write_crema(root: Path, actors=range(1001, 1013)) -> Path:
    names = [
        f"AudioWAV/{a}_{s}_{e}_XX.wav" for a in actors for e in CREMA_CODES for s in ("DFA", "IEO")
    ]
    return write_corpus(root, names)


TESS_WORDS = ("back", "bar", "base", "bath")


TESS_FOLDERS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
           "neutral": "neutral", "ps": "pleasant_surprised", "sad": "sad"}  # fmt: skip


def write_tess(root: Path) -> Path:
    names = [f"{spk}_{folder}/{spk}_{w}_{code}.wav" for spk in ("OAF", "YAF")
             for code, folder in TESS_FOLDERS.items() for w in TESS_WORDS]  # fmt: skip
    names.append("OAF_neutral/OA_bite_neutral.wav")  # the released set has a few OA_ names
    return write_corpus(root, names)


LIGHTNING_FREE = """
import sys
from ser.__main__ import main
main(["predict", *sys.argv[1:]])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics"))
print("HEAVY", heavy)
"""


def logged_steps(run_dir: Path, tag: str = "val/uar") -> list[int]:
    """The global steps at which a run (its TensorBoard events in ``run_dir``) logged ``tag``:
    a resumed run logs only the epochs it trained."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return [event.step for event in EventAccumulator(str(run_dir)).Reload().Scalars(tag)]


def tree_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh interpreter that runs this checkout's ``ser`` (and can import
    ``tests.faults``), not whichever ``ser`` is installed: the tests' own repository first on
    ``PYTHONPATH``; one BLAS thread per process; ``extra`` on top."""
    import os

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def run_without_lightning(model: Path, audio: Path) -> str:
    """Run ``ser predict`` in a fresh interpreter; return its output, which lists heavy imports."""
    result = subprocess.run(
        [sys.executable, "-c", LIGHTNING_FREE, str(model), str(audio)],
        capture_output=True, text=True, cwd=REPO, env=tree_env(), timeout=300, check=True,
    )  # fmt: skip
    return result.stdout


#: (F1, F2, F3) of five vowels (Hz): what makes a voice detector call a sound speech.
VOWEL_FORMANTS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
                  (570, 840, 2410)]  # fmt: skip


def speech_like(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Synthetic speech that silero-vad takes for speech: syllables of a glottal pulse train
    (100-220 Hz) through vowel formants, each after a short fricative-like noise burst."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)

    def resonance(x: np.ndarray, freq: float, bandwidth: float = 90.0) -> np.ndarray:
        r, theta = np.exp(-np.pi * bandwidth / rate), 2 * np.pi * freq / rate
        return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)

    parts, n = [], round(seconds * rate)
    while sum(len(p) for p in parts) < n:
        length = round(rng.uniform(0.12, 0.3) * rate)
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, length)))
        cycles = np.cumsum(f0 / rate)
        pulses = (np.diff(np.floor(cycles), prepend=0) > 0).astype(float)
        source = lfilter([1], [1, -0.97], pulses)
        vowel = sum(resonance(source, f) for f in VOWEL_FORMANTS[rng.integers(5)])
        fricative = resonance(rng.standard_normal(round(0.05 * rate)) * 0.15, 4000, 1500)
        parts += [fricative, vowel * np.hanning(length)]
    wave = np.concatenate(parts)[:n]
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def speech_with_pauses(
    pattern: list[tuple[str, float]], rate: int = RATE, seed: int = 0
) -> np.ndarray:
    """A recording of ``("speech" | "silence", seconds)`` parts in order, with a faint noise floor."""
    rng = np.random.default_rng(seed)
    parts = [
        speech_like(s, rate, seed + i)
        if kind == "speech"
        else np.zeros(round(s * rate), np.float32)
        for i, (kind, s) in enumerate(pattern)
    ]
    wave = np.concatenate(parts)
    return (wave + 0.002 * rng.standard_normal(len(wave))).astype(np.float32)


#: Tiny sizes for the encoder bundles in tests: the bundle's own architecture (and so its
#: state-dict keys), a few channels and two layers.
TINY_ENCODER = {
    "extractor_conv_layer_config": [(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2),
                                    (8, 2, 2), (8, 2, 2)],
    "encoder_embed_dim": 16, "encoder_pos_conv_kernel": 8, "encoder_pos_conv_groups": 2,
    "encoder_num_layers": 2, "encoder_num_heads": 2, "encoder_ff_interm_features": 32,
}  # fmt: skip


def write_encoder(monkeypatch, torch_home: Path, name: str, seed: int = 0, **sizes) -> Path:
    """Shrink ``torchaudio.pipelines.<name>`` to a tiny architecture (``TINY_ENCODER`` or
    ``sizes``) for the test and write a random model of it where torch.hub looks,
    ``<torch_home>/hub/checkpoints/<bundle file>``, in the bundle's state-dict format; set
    ``TORCH_HOME``. Loading it by name is then what a connected user runs, offline."""
    import dataclasses

    import torchaudio
    from torchaudio.pipelines._wav2vec2.utils import _get_model

    bundle = getattr(torchaudio.pipelines, name)
    params = {**bundle._params, **(sizes or TINY_ENCODER)}
    monkeypatch.setattr(torchaudio.pipelines, name, dataclasses.replace(bundle, _params=params))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    torch.manual_seed(seed)
    path = torch_home / "hub" / "checkpoints" / Path(bundle._path).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_get_model(bundle._model_type, params).state_dict(), path)
    return path


def write_hf_encoder(folder: Path, family: str, normalize: bool, seed: int = 0) -> Path:
    """A tiny random Hugging Face ``transformers`` encoder (``Wav2Vec2Model``, ``HubertModel`` or
    ``WavLMModel``) written by ``save_pretrained`` into ``folder``, with the feature extractor's
    ``preprocessor_config.json``: the files a connected user's ``hf download`` gives."""
    import transformers

    config = getattr(transformers, family.replace("Model", "Config"))(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip  (the real 7 convolutions, 320 samples per frame)
    torch.manual_seed(seed)
    getattr(transformers, family)(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize).save_pretrained(folder)
    return folder


def figures_of_predictions(path: Path, n_bins: int = 15) -> dict:
    """UAR, accuracy and ECE recomputed with numpy from a ``predictions.csv`` (``ser test``'s
    rows: path, speaker, label, predicted, one probability column per class), for checking the
    figures ``ser`` reports against an independent computation. ECE: L1, ``n_bins`` equal-width
    bins of the top probability, each ``(lo, hi]`` as torchmetrics bins."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    class_names = list(rows[0])[4:]
    labels = np.array([class_names.index(r["label"]) for r in rows])  # (N,)
    probabilities = np.array([[float(r[c]) for c in class_names] for r in rows])  # (N, C)
    predicted = probabilities.argmax(axis=1)
    assert [class_names[k] for k in predicted] == [r["predicted"] for r in rows]
    correct = predicted == labels
    recalls = [correct[labels == k].mean() for k in range(len(class_names)) if (labels == k).any()]
    confidence = probabilities.max(axis=1)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = sum(
        abs(confidence[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
        for b in range(n_bins) if (bins == b).any()
    )  # fmt: skip
    return {"uar": float(np.mean(recalls)), "accuracy": float(correct.mean()), "ece": float(ece),
            "n_clips": len(rows)}  # fmt: skip


def run_ser(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ser ARGS`` in a fresh interpreter (this checkout's ``ser``), as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ser", *args], cwd=cwd, env=tree_env(**(env or {})),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The ``error: ...`` line of a run that must end with exit status 2 and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr[-3000:]
    return line


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ser serve MODEL ARGS`` in a fresh interpreter on 127.0.0.1 and a free port; ``start``
    waits (bounded) until ``GET /health`` answers 200."""

    def __init__(self, model: Path, *args: str, key: str | None = None, cwd: Path = REPO) -> None:
        self.model, self.args, self.key, self.cwd = model, list(args), key, cwd
        self.process: subprocess.Popen | None = None

    def start(self, wait: float = 240.0) -> Server:
        import time

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        key = ["--api-key", self.key] if self.key else []
        self.log = open(Path(self.cwd) / f"serve-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ser", "serve", str(self.model), "--port", str(self.port), *key,
             *self.args], cwd=self.cwd, env=tree_env(), stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ser serve exited: {self.output()}")
            try:
                if self.get("/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ser serve not ready in {wait} s: {self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, key: bool = True, timeout: float = 60.0):  # fmt: skip
        """``(status, headers, body bytes)`` of one request (the key sent unless ``key=False``)."""
        import urllib.error
        import urllib.request

        headers = dict(headers or {})
        if key and self.key:
            headers["X-API-Key"] = self.key
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get(self, path: str, **kwargs):
        status, _, body = self.request("GET", path, **kwargs)
        return status, body

    def predict(self, data: bytes, query: str = "", **kwargs):
        """``(status, JSON)`` of ``POST /predict?QUERY`` with ``data`` as the body."""
        import json

        status, _, body = self.request("POST", f"/predict?{query}", data, **kwargs)
        return status, json.loads(body)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait (bounded); the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        return self.process.returncode


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, dict]:
    """A ``multipart/form-data`` body with ``fields`` and the file ``data`` as ``file``."""
    boundary = "ser-test-boundary-7c1f"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]  # fmt: skip
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def error_line(capsys, *argv: str) -> str:
    """Run ``ser ARGV``: exit status 2 and one ``error:`` line, no traceback; return the line."""
    with pytest.raises(SystemExit) as exit_info:
        ser_main(list(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]
