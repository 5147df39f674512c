"""Pretrained speech encoders, offline: tiny random models written in each bundle's real
state-dict format where torch.hub looks, loaded by bundle name as a connected user loads them."""

from __future__ import annotations

import csv
import importlib.util
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio

from ser.__main__ import main as ser_main
from ser.cli import main
from ser.data.feature_cache import FeatureCache
from ser.errors import SERError
from ser.inference import load_model, predict_files
from ser.inference.export import example_waveform, export
from ser.models import EncoderHead, FineTunedEncoder
from ser.transforms import Augmentation, FeaturePipeline, LogMel, LogMelPitch, SpeechEncoder
from ser.transforms.augment import FrequencyMask, Gain, Mixup, TimeMask
from ser.transforms.pipeline import crop_frames

from .helpers import (
    CLASSES,
    FAST,
    RATE,
    RAVDESS_YAML,
    REPO,
    noise,
    save_checkpoint,
    write_encoder,
    write_hf_encoder,
    write_ravdess,
)

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_ONNX_RUNTIME = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
FAMILIES = ["WAV2VEC2_BASE", "HUBERT_BASE", "WAVLM_BASE_PLUS", "WAVLM_LARGE"]  # LARGE normalises


@pytest.fixture
def torch_home(tmp_path: Path) -> Path:
    return tmp_path / "torch"


def batch(lengths=(16000, 12000, 7000), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    lengths = torch.tensor(lengths)
    wave = 0.1 * torch.randn(len(lengths), int(lengths.max()))
    wave *= torch.arange(wave.shape[1]) < lengths[:, None]  # (B, T) zero-padded
    return wave, lengths


@pytest.mark.parametrize("name", FAMILIES)
def test_layers_equal_torchaudio_extract_features(name: str, monkeypatch, torch_home: Path):
    write_encoder(monkeypatch, torch_home, name)
    frontend = SpeechEncoder(RATE, name)  # by name, from $TORCH_HOME/hub/checkpoints
    wave, lengths = batch((9000, 6000))
    features, frames = frontend(wave, lengths)  # (B, L, D, F), a padded batch
    # torchaudio's own model and extract_features, one unpadded clip at a time: its normalising
    # bundles normalise the whole input tensor, the base ones' group norm too
    reference = getattr(torchaudio.pipelines, name).get_model()
    assert features.shape[1] == 2 and frames[0] == features.shape[-1] > frames[1]
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            expected, _ = reference.extract_features(wave[i : i + 1, :n])  # per layer (1, F, D)
        assert len(expected) == 2 and expected[0].shape[1] == frames[i]
        for layer, hidden in enumerate(expected):
            got = features[i, layer, :, : int(frames[i])].T
            assert torch.allclose(got, hidden[0], atol=1e-4), (i, layer)
    assert frontend.identity["bundle"] == name


@pytest.mark.parametrize("pooling", ["mean", "mean_std", "attentive"])
def test_head_ignores_padding_and_trains_its_layer_weights(pooling: str):
    torch.manual_seed(0)
    head = EncoderHead(len(CLASSES), 16, RATE, pooling=pooling).eval()
    features = torch.randn(2, 3, 16, 20)  # (B, L, D, F)
    lengths = torch.tensor([20, 12])
    padded = features.clone()
    padded[1, ..., 12:] = 1e3  # whatever lies beyond a clip's frames
    alone = head(features[1:, ..., :12], lengths[1:])
    assert torch.allclose(head(padded, lengths)[1], alone[0], atol=1e-5)
    head.train()
    torch.nn.functional.cross_entropy(head(features, lengths), torch.tensor([0, 1])).backward()
    grad = head.layer_logits.grad
    assert (grad[:3] != 0).all() and (grad[3:] == 0).all()  # the 3 layers given, no others


def test_missing_weights_is_one_line_before_training(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    root = write_ravdess(tmp_path / "ravdess")
    for config, option in [("wavlm_base_plus", "--data.frontend"), ("wav2vec2_base_finetune", "")]:
        start = time.monotonic()
        with pytest.raises(SystemExit) as exit_:
            ser_main(["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), "--data",
                      RAVDESS_YAML, "--data.root", str(root)])  # fmt: skip
        assert exit_.value.code == 2 and time.monotonic() - start < 30
        stderr = capsys.readouterr().err
        err = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in stderr and len(err) == 1
        assert err[0].startswith("error: no weights for encoder")
        name = "wavlm_base_plus.pth" if "wavlm" in config else "wav2vec2_fairseq_base_ls960.pth"
        assert name in err[0] and str(tmp_path / "empty" / "hub" / "checkpoints") in err[0]
        assert f"https://download.pytorch.org/torchaudio/models/{name}" in err[0]
        assert option in err[0]


def test_an_explicit_weights_file_is_read(tmp_path: Path, monkeypatch):
    path = write_encoder(monkeypatch, tmp_path / "elsewhere", "HUBERT_BASE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    moved = path.rename(tmp_path / "my-hubert.pth")
    frontend = SpeechEncoder(RATE, "HUBERT_BASE", weights=str(moved))
    assert frontend(*batch())[0].shape[:3] == (3, 2, 16)
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SERError, match="broken.pth: not HUBERT_BASE's weights"):
        SpeechEncoder(RATE, "HUBERT_BASE", weights=str(tmp_path / "broken.pth"))
    with pytest.raises(SERError, match="unknown encoder bundle 'HUBERT'"):
        SpeechEncoder(RATE, "HUBERT")
    with pytest.raises(SERError, match="takes 16000 Hz"):
        SpeechEncoder(8000, "HUBERT_BASE", weights=str(moved))


def test_feature_cache_encodes_each_clip_once(tmp_path: Path, monkeypatch, torch_home: Path):
    write_encoder(monkeypatch, torch_home, "WAVLM_BASE_PLUS")
    frontend = SpeechEncoder(RATE, "WAVLM_BASE_PLUS")
    cache = FeatureCache(frontend.identity, tmp_path / "features")
    wave, lengths = batch()
    first, frames = cache(frontend, wave, lengths)
    assert (cache.misses, cache.hits) == (3, 0)
    again, _ = cache(frontend, wave.flip(0), lengths.flip(0))  # other batch, other padding
    assert (cache.misses, cache.hits) == (3, 3)
    assert torch.allclose(again.flip(0)[..., : first.shape[-1]], first, atol=1e-2)
    for i, n in enumerate(lengths.tolist()):  # each clip as encoded alone, unpadded
        alone, alone_frames = frontend(wave[i : i + 1, :n], lengths[i : i + 1])
        assert frames[i] == alone_frames[0]
        assert torch.allclose(first[i, ..., : frames[i]], alone[0], atol=1e-2, rtol=1e-2)
        assert (first[i, ..., frames[i] :] == 0).all()
    cache(frontend, wave[:1, 160:16000], torch.tensor([15840]))  # another crop: a new entry
    assert cache.misses == 4 and len(list(cache.path.glob("*.pt"))) == 4
    # the pipeline: eval uses the cache; waveform augmentation while training bypasses it
    augmentation = Augmentation([Gain(p=1.0)])
    spec = {
        "class_path": "ser.transforms.SpeechEncoder",
        "init_args": {"bundle": "WAVLM_BASE_PLUS"},
    }
    pipeline = FeaturePipeline(spec, RATE, augmentation=augmentation)
    pipeline.feature_cache = cache
    pipeline.eval()(wave, lengths)
    assert cache.hits == 6
    pipeline.train()(wave, lengths)
    assert (cache.hits, cache.misses) == (6, 4)


def test_masks_and_mixup_run_on_cached_encoder_features(tmp_path: Path, monkeypatch, torch_home):
    write_encoder(monkeypatch, torch_home, "HUBERT_BASE")
    spec = {"class_path": "ser.transforms.SpeechEncoder", "init_args": {"bundle": "HUBERT_BASE"}}
    augmentation = Augmentation(features=[TimeMask(p=1.0), FrequencyMask(p=1.0)], mixup=Mixup())
    pipeline = FeaturePipeline(spec, RATE, augmentation=augmentation)
    pipeline.feature_cache = cache = FeatureCache(pipeline.frontend.identity, tmp_path / "f")
    wave, lengths = batch()
    labels = torch.tensor([0, 1, 2])
    clean = pipeline.eval().process({"waveform": wave, "lengths": lengths, "label": labels}, 4)
    torch.manual_seed(0)
    out = pipeline.train().process({"waveform": wave, "lengths": lengths, "label": labels}, 4)
    assert out["features"].shape == clean["features"].shape and out["features"].dim() == 4
    assert out["target"].shape == (3, 4) and not torch.equal(out["features"], clean["features"])
    assert (cache.misses, cache.hits) == (3, 3)  # the masks and mixup come after the cache
    head = EncoderHead(4, 16, RATE)
    head(out["features"], out["feature_lengths"]).sum().backward()


def encoder_checkpoint(path: Path, monkeypatch, torch_home: Path) -> Path:
    write_encoder(monkeypatch, torch_home, "WAVLM_BASE_PLUS")
    frontend = {"class_path": "ser.transforms.SpeechEncoder",
                "init_args": {"bundle": "WAVLM_BASE_PLUS"}}  # fmt: skip
    torch.manual_seed(1)
    net = EncoderHead(len(CLASSES), 16, RATE, hidden=0)
    net.classifier[-1].weight.data *= 30  # logits that vary with the input
    pipeline = FeaturePipeline(frontend, RATE).spec  # what fit records, the weights' hash too
    return save_checkpoint(path, net, "ser.models.EncoderHead", {"hidden": 0}, pipeline, 16)


def test_checkpoint_refuses_other_encoder_weights(tmp_path: Path, monkeypatch, torch_home: Path):
    checkpoint = encoder_checkpoint(tmp_path / "enc.ckpt", monkeypatch, torch_home)
    assert load_model(checkpoint) is not None
    write_encoder(monkeypatch, torch_home, "WAVLM_BASE_PLUS", seed=1)  # another file, same name
    with pytest.raises(SERError, match="wavlm_base_plus.pth: not the WAVLM_BASE_PLUS weights this "
                       "model was trained with"):  # fmt: skip
        load_model(checkpoint)


def test_checkpoint_predict_and_torchscript_agree(tmp_path: Path, monkeypatch, torch_home: Path):
    checkpoint = encoder_checkpoint(tmp_path / "enc.ckpt", monkeypatch, torch_home)
    figures = export(checkpoint, tmp_path / "out", ["torchscript"])
    assert max(figures["torchscript"]) < 1e-4  # the export's own parity check
    model, scripted = load_model(checkpoint), load_model(tmp_path / "out" / "model.ts")
    waveform = example_waveform(RATE, 2.7, 2, seed=5)
    with torch.inference_mode():
        expected, got = model(waveform), scripted.module(waveform)
    assert expected.std() > 0.1 and (got - expected).abs().max() < 1e-4
    audio = tmp_path / "a.wav"
    sf.write(audio, noise(2.5), RATE)
    from_checkpoint, from_export = (predict_files(m, [audio])[0] for m in (model, scripted))
    assert from_checkpoint.probabilities == pytest.approx(from_export.probabilities, abs=1e-4)


@pytest.mark.slow  # torch.export of the encoder: about 20 s here
@pytest.mark.skipif(not HAS_ONNX_RUNTIME, reason="needs onnx, onnxscript and onnxruntime")
def test_onnx_export_of_an_encoder_model_matches_its_checkpoint(
    tmp_path: Path, monkeypatch, torch_home: Path
):
    checkpoint = encoder_checkpoint(tmp_path / "enc.ckpt", monkeypatch, torch_home)
    onnx = export(checkpoint, tmp_path / "out", ["onnx"])["onnx"]  # checked with onnxruntime
    assert onnx is not None and max(onnx) < 1e-4


@pytest.mark.slow  # a fit, a test and a predict: about 40 s here
def test_ser_test_scores_recordings_as_predict_does(tmp_path: Path, monkeypatch, torch_home):
    write_encoder(monkeypatch, torch_home, "HUBERT_BASE")
    root = write_ravdess(tmp_path / "ravdess", seconds=1.3)
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "hubert_base.yaml")
    main(["fit", "--config", config, "--data", RAVDESS_YAML, "--data.root", str(root), *FAST,
          "--trainer.max_epochs", "1", "--data.emotions", f"[{', '.join(CLASSES)}]"])  # fmt: skip
    run = tmp_path / "lightning_logs" / "hubert_base" / "version_0"
    checkpoint = run / "checkpoints" / "last.ckpt"
    main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(checkpoint),
          "--score", "recordings", "--window", "1.0", "--hop", "0.5"])  # fmt: skip
    with open(tmp_path / "lightning_logs" / "hubert_base" / "version_1" / "test" /
              "predictions.csv", newline="") as f:  # fmt: skip
        tested = {r["path"]: r for r in csv.DictReader(f)}
    ser_main(["predict", str(checkpoint), *tested, "--window", "1.0", "--hop", "0.5",
              "--output", str(tmp_path / "p.csv")])  # fmt: skip
    with open(tmp_path / "p.csv", newline="") as f:
        predicted = {r["file"]: r for r in csv.DictReader(f) if r["window"] == "all"}
    assert predicted.keys() == tested.keys() and len(tested) == 16
    for path, row in tested.items():
        for c in CLASSES:
            assert float(row[c]) == pytest.approx(float(predicted[path][c]), abs=1e-4), path


def test_fine_tuned_encoder_trains_at_its_own_rate(monkeypatch, torch_home: Path):
    write_encoder(monkeypatch, torch_home, "WAV2VEC2_BASE")
    net = FineTunedEncoder(len(CLASSES), 1, RATE, encoder_lr=1e-5, freeze_steps=1)
    head, encoder = net.parameter_groups()
    assert encoder["lr"] == 1e-5 and "lr" not in head
    extractor = {id(p) for p in net.encoder.feature_extractor.parameters()}
    assert extractor and not extractor & {id(p) for p in encoder["params"]}
    wave, lengths = batch()
    for step in range(2):  # step 0: encoder frozen; step 1: it trains
        net.zero_grad()
        net(wave[:, None], lengths).sum().backward()
        transformer = net.encoder.encoder.transformer.layers[0].feed_forward
        has_grad = transformer.output_dense.weight.grad is not None
        assert has_grad == (step == 1) and net.head.layer_logits.grad is not None


@pytest.mark.slow
def test_real_base_architecture_shapes(tmp_path: Path, monkeypatch):
    """The real WAVLM_BASE_PLUS architecture, random weights: 12 layers of 768 at 50 frames/s."""
    from torchaudio.pipelines._wav2vec2.utils import _get_model

    bundle = torchaudio.pipelines.WAVLM_BASE_PLUS
    path = tmp_path / "torch" / "hub" / "checkpoints" / "wavlm_base_plus.pth"
    path.parent.mkdir(parents=True)
    torch.save(_get_model(bundle._model_type, bundle._params).state_dict(), path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    frontend = SpeechEncoder(RATE, "WAVLM_BASE_PLUS")
    features, frames = frontend(*batch((32000, 20000)))
    assert features.shape == (2, 12, 768, 99) and frames.tolist() == [99, 62]
    assert EncoderHead(4, frontend.n_features, RATE)(features, frames).shape == (2, 4)


def test_cached_features_are_cropped_as_waveforms_are():
    features = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)  # (B, C, F)
    lengths = torch.tensor([10, 4])
    centre, kept = crop_frames(features, lengths, 6, random=False)
    assert kept.tolist() == [6, 4] and torch.equal(centre[0], features[0, :, 2:8])
    assert torch.equal(centre[1, :, :4], features[1, :, :4]) and (centre[1, :, 4:] == 0).all()
    starts = set()
    for _ in range(50):
        cropped, _ = crop_frames(features, lengths, 6, random=True)
        start = int(cropped[0, 0, 0])
        assert torch.equal(cropped[0], features[0, :, start : start + 6])
        starts.add(start)
    assert starts == {0, 1, 2, 3, 4}  # every start the clip allows


def test_crepe_pitch_rows_beside_log_mel():
    pytest.importorskip("torchcrepe")
    frontend = LogMelPitch(RATE, hop_ms=16.0)
    t = torch.arange(8000) / RATE
    wave = torch.stack(
        [0.5 * torch.sin(2 * torch.pi * 220.0 * t), 0.5 * torch.sin(2 * torch.pi * 330.0 * t)]
    )
    wave[1, 4000:] = 0
    features, frames = frontend(wave, torch.tensor([8000, 4000]))
    mel, mel_frames = LogMel(RATE, hop_ms=16.0)(wave, torch.tensor([8000, 4000]))
    assert features.shape == (2, 66, 32) and torch.equal(frames, mel_frames)
    assert torch.equal(features[:, :64], mel) and frontend.n_features == 66
    pitch, periodicity = features[:, 64, 5:-5], features[:, 65, 5:-5]  # away from the edges
    assert torch.allclose(2 ** pitch[0] * 100, torch.tensor(220.0), rtol=0.03)
    assert torch.allclose(2 ** pitch[1, :10] * 100, torch.tensor(330.0), rtol=0.03)
    assert (periodicity[0] > 0.5).all() and (features[1, 64:, 16:] == 0).all()  # padding zero


def test_output_frames_equal_what_the_encoder_makes(monkeypatch, tmp_path: Path):
    write_encoder(monkeypatch, tmp_path / "torch", "WAV2VEC2_BASE")
    encoder = SpeechEncoder(16000, "WAV2VEC2_BASE")
    for n in (400, 1234, 16000):  # counted without running it, as clip-length checks do
        _, frames = encoder(torch.randn(1, n), torch.tensor([n]))
        assert int(frames[0]) == encoder.output_frames(n)
    assert encoder.output_frames(399) == 0


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (pip install 'ser[hf]')")
@pytest.mark.parametrize(
    "family, normalize",
    [("Wav2Vec2Model", False), ("HubertModel", True), ("WavLMModel", False)],
)
def test_hugging_face_folder_equals_transformers_hidden_states(
    family: str, normalize: bool, tmp_path: Path
):
    import transformers

    folder = write_hf_encoder(tmp_path / "tiny", family, normalize)
    frontend = SpeechEncoder(RATE, str(folder))
    assert frontend.normalize == normalize and frontend.n_layers == 2 and frontend.n_features == 16
    wave, lengths = batch((9000, 6000))
    features, frames = frontend(wave, lengths)  # (B, L, D, F), padded batch
    # the reference: transformers' own feature extractor and model, one unpadded clip at a time
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    for i, n in enumerate(lengths.tolist()):
        inputs = extractor(wave[i, :n].numpy(), sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            hidden = model(inputs.input_values, output_hidden_states=True).hidden_states
        assert int(frames[i]) == hidden[1].shape[1]
        for layer in range(2):
            got = features[i, layer, :, : int(frames[i])].T
            assert torch.allclose(got, hidden[layer + 1][0], atol=1e-4), (family, i, layer)
    assert frontend.identity["weights_sha256"]


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (pip install 'ser[hf]')")
def test_hugging_face_hub_id_is_read_from_the_local_cache_only(tmp_path: Path, monkeypatch):
    import huggingface_hub

    cache = tmp_path / "hf" / "hub"
    revision = "0" * 40  # the cache layout of huggingface_hub: refs/main -> snapshots/<revision>
    write_hf_encoder(cache / "models--org--tiny" / "snapshots" / revision, "WavLMModel", False)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert SpeechEncoder(RATE, "org/tiny")(*batch())[0].shape[:3] == (3, 2, 16)
    start = time.monotonic()
    with pytest.raises(SERError, match="no local copy of Hugging Face model org/missing: on a "
                       "connected machine run `hf download org/missing"):  # fmt: skip
        SpeechEncoder(RATE, "org/missing")
    assert time.monotonic() - start < 10  # no download attempt
    with pytest.raises(SERError, match="not a Hugging Face model folder"):
        SpeechEncoder(RATE, str(tmp_path))
    (tmp_path / "wavlm_base_plus.pth").write_bytes(b"weights")
    with pytest.raises(SERError, match="is a file: give a bundle name"):
        SpeechEncoder(RATE, str(tmp_path / "wavlm_base_plus.pth"))


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (pip install 'ser[hf]')")
def test_hugging_face_model_fine_tunes(tmp_path: Path):
    folder = write_hf_encoder(tmp_path / "tiny", "Wav2Vec2Model", True)
    net = FineTunedEncoder(len(CLASSES), 1, RATE, bundle=str(folder), encoder_lr=1e-5)
    wave, lengths = batch()
    net(wave[:, None], lengths).sum().backward()
    assert (
        net.normalize
        and net.encoder.encoder.transformer.layers[0].attention.k_proj.weight.grad is not None
    )


def test_fine_tuned_checkpoint_needs_no_pretrained_file(tmp_path: Path, monkeypatch):
    """A fine-tuned net's checkpoint holds all its weights: using it reads no pretrained file."""
    write_encoder(monkeypatch, tmp_path / "torch", "WAV2VEC2_BASE")
    torch.manual_seed(3)
    net = FineTunedEncoder(len(CLASSES), 1, RATE, hidden=0)
    for p in net.parameters():  # weights unlike the pretrained file's
        p.data += 0.05 * torch.randn_like(p)
    pipeline = {"frontend": {"class_path": "ser.transforms.Waveform",
                             "init_args": {"normalize": False}}, "denoise": None}  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "ft.ckpt", net, "ser.models.FineTunedEncoder",
                                 {"hidden": 0}, pipeline, 1)  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # no pretrained file any more
    model = load_model(checkpoint)
    wave, lengths = batch((9000,))
    with torch.inference_mode():
        expected = net.eval()(wave[:, None], lengths)  # logits
        assert expected.std() > 0.01 and torch.allclose(model(wave), expected, atol=1e-4)
    with pytest.raises(SERError, match="no weights for encoder WAV2VEC2_BASE"):
        FineTunedEncoder(len(CLASSES), 1, RATE)  # training still needs it
