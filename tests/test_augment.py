"""Batched augmentation: shapes, lengths, padding, seeds, SNR, settings errors, training only."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from ser.data import RAVDESS
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.transforms import Augmentation
from ser.transforms.augment import (
    AddNoise,
    FrequencyMask,
    Gain,
    Mixup,
    PitchShift,
    Speed,
    TimeMask,
    TimeShift,
    TimeStretch,
    valid_mask,
)

from .helpers import REPO

SR = 16000


def tones(lengths=(16000, 12000, 8000, 14000), freq=440.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of tones of different lengths: ``(B, T), (B,)``."""
    lengths = torch.tensor(lengths)
    t = torch.arange(int(lengths.max())) / SR
    wave = 0.3 * torch.sin(2 * math.pi * freq * t).repeat(len(lengths), 1)
    return wave * valid_mask(lengths, wave.shape[1]), lengths


def peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(len(x))).abs()
    return float(spectrum.argmax()) * SR / len(x)


ALL_WAVE = [
    AddNoise(p=1.0),
    Gain(p=1.0),
    TimeShift(p=1.0),
    Speed(p=1.0),
    TimeStretch(p=1.0),
    PitchShift(p=1.0),
]


@pytest.mark.parametrize("aug", ALL_WAVE, ids=lambda a: type(a).__name__)
def test_wave_augment_keeps_dtype_padding_and_lengths(aug):
    wave, lengths = tones()
    torch.manual_seed(0)
    out, out_lengths = aug(wave, lengths, SR)
    assert out.dtype == torch.float32 and out_lengths.dtype == torch.int64
    assert out.shape == (4, int(out_lengths.max()))
    assert (out * ~valid_mask(out_lengths, out.shape[1]) == 0).all()  # padding stays zero
    tail = out[torch.arange(4), out_lengths - 1]
    assert (tail != 0).sum() >= 3  # the valid part reaches the stated length
    torch.manual_seed(0)
    again, again_lengths = aug(wave, lengths, SR)
    assert torch.equal(out, again) and torch.equal(out_lengths, again_lengths)  # seed fixes it
    assert not torch.equal(out[:, : wave.shape[1]], wave[:, : out.shape[1]])


def test_probability_zero_is_identity_and_draws_are_per_example():
    wave, lengths = tones(lengths=[8000] * 64)
    out, _ = Gain(p=0.0)(wave, lengths, SR)
    assert torch.equal(out, wave)
    torch.manual_seed(1)
    out, _ = Gain(p=0.5, gain_db=(6.0, 12.0))(wave, lengths, SR)
    changed = (out != wave).any(dim=1)
    assert 16 < int(changed.sum()) < 48  # about half, drawn per example
    ratio = out[changed].abs().amax(1) / wave[changed].abs().amax(1)
    assert len(set(ratio.round(decimals=4).tolist())) > 10  # one gain per example


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_measured_snr_matches_the_asked_one(snr):
    wave, lengths = tones()
    torch.manual_seed(0)
    out, _ = AddNoise(p=1.0, snr_db=(snr, snr))(wave, lengths, SR)
    mask = valid_mask(lengths, wave.shape[1])
    noise = (out - wave) * mask
    measured = 10 * torch.log10((wave**2).sum(1) / (noise**2).sum(1))
    assert torch.allclose(measured, torch.full_like(measured, snr), atol=0.05)
    assert ((out - wave) * ~mask == 0).all()  # no noise in the padding


def test_noise_recordings_from_a_folder(tmp_path: Path):
    rng = np.random.default_rng(0)
    (tmp_path / "noise" / "sub").mkdir(parents=True)
    hum = 0.1 * np.sin(2 * np.pi * 50 * np.arange(8000) / 8000)  # 50 Hz hum at 8 kHz
    sf.write(tmp_path / "noise" / "sub" / "hum.wav", hum.astype(np.float32), 8000)
    sf.write(tmp_path / "noise" / "hiss.flac", 0.05 * rng.standard_normal(4000), 8000)
    aug = AddNoise(p=1.0, snr_db=(5.0, 15.0), noise_dir=str(tmp_path / "noise"))
    assert len(aug.noise_files) == 2
    wave, lengths = tones()
    out, _ = aug(wave, lengths, SR)
    noise = out - wave
    measured = 10 * torch.log10((wave**2).sum(1) / (noise**2).sum(1))
    assert ((measured > 4.95) & (measured < 15.05)).all()
    assert len(aug.noise_bank(SR)) == SR + SR // 2  # 1 s + 0.5 s, resampled to 16 kHz


def test_time_shift_is_a_rotation_within_each_clip():
    wave, lengths = tones()
    wave = wave + torch.arange(wave.shape[1]) * 1e-5 * valid_mask(lengths, wave.shape[1])
    torch.manual_seed(3)
    out, out_lengths = TimeShift(p=1.0, max_fraction=0.1)(wave, lengths, SR)
    assert torch.equal(out_lengths, lengths)
    moved = []
    for x, y, n in zip(wave, out, lengths.tolist(), strict=True):
        shifts = [k for k in range(n) if torch.equal(torch.roll(x[:n], k), y[:n])]
        assert len(shifts) == 1
        moved.append(abs((shifts[0] + n // 2) % n - n // 2))  # circular distance
        assert moved[-1] <= round(0.1 * n)  # within max_fraction of the clip's length
    assert any(moved)


def test_speed_and_stretch_change_lengths_pitch_shift_keeps_them():
    wave, lengths = tones()
    _, fast = Speed(p=1.0, factors=[1.1])(wave, lengths, SR)
    assert torch.equal(fast, torch.ceil(lengths * 10 / 11).long())
    slow_wave, slow = TimeStretch(p=1.0, rates=[0.8])(wave, lengths, SR)
    assert torch.equal(slow, (lengths / 0.8).round().long())
    assert abs(peak_hz(slow_wave[0, : slow[0]]) - 440) < 5  # tempo changes, pitch stays
    up, up_lengths = PitchShift(p=1.0, semitones=[2.0])(wave, lengths, SR)
    assert torch.equal(up_lengths, lengths)
    assert abs(peak_hz(up[0, 2000:14000]) - 440 * 2 ** (2 / 12)) < 6  # 493.9 Hz


def test_spec_masks_stay_inside_valid_frames():
    x = torch.randn(8, 64, 100) + 3.0
    lengths = torch.tensor([100, 80, 60, 40, 100, 10, 3, 1])
    x = x * valid_mask(lengths, 100)[:, None, :]
    torch.manual_seed(0)
    out, out_lengths = TimeMask(p=1.0, max_width=20, n_masks=2)(x, lengths)
    assert torch.equal(out_lengths, lengths) and out.shape == x.shape
    assert (out * ~valid_mask(lengths, 100)[:, None, :] == 0).all()
    masked = (out != x).all(dim=1)  # (B, F) whole frames replaced
    assert masked.any() and (masked.sum(1) <= 40).all()
    assert not (masked & ~valid_mask(lengths, 100)).any()
    torch.manual_seed(0)
    out, _ = FrequencyMask(p=1.0, max_width=8, n_masks=2)(x, lengths)
    bands = (out != x)[:, :, 0]  # (B, n_mels) masked bins of the first frame
    assert bands.any() and (bands.sum(1) <= 16).all()
    assert torch.equal(FrequencyMask(p=0.0)(x, lengths)[0], x)


def test_masks_fill_with_the_clip_mean_and_cover_every_encoder_layer():
    lengths = torch.tensor([30, 12])
    valid = valid_mask(lengths, 30)
    x = (torch.randn(2, 3, 16, 30) + 5.0) * valid[:, None, None, :]  # (B, L, D, F) encoder layers
    for mask in (FrequencyMask(p=1.0, max_width=6), TimeMask(p=1.0, max_width=6)):
        torch.manual_seed(1)
        out, _ = mask(x, lengths)
        changed = out != x
        assert changed.any() and out.shape == x.shape
        assert torch.equal(changed, changed[:, :1].expand_as(changed))  # same mask on each layer
        assert (out * ~valid[:, None, None, :] == 0).all()  # padding stays zero
        for i, n in enumerate(lengths.tolist()):
            mean = x[i, ..., :n].mean()  # over the valid frames of every layer and bin
            assert torch.allclose(out[i][changed[i]], mean.expand(int(changed[i].sum())))
    spectrogram = x[:, 0]  # (B, C, F): masks fill with the clip mean there too
    torch.manual_seed(1)
    out, _ = FrequencyMask(p=1.0, max_width=6)(spectrogram, lengths)
    changed = out != spectrogram
    assert torch.allclose(out[1][changed[1]], spectrogram[1, :, :12].mean())


def test_mixup_mixes_encoder_features():
    x, lengths = torch.randn(6, 3, 16, 20), torch.full((6,), 20)
    torch.manual_seed(0)
    mixed, _, target = Mixup(p=1.0)(x, lengths, torch.arange(6) % 4, 4)
    weight = target.max(1).values  # lam of each example (its own label, the larger part)
    own = torch.arange(6) % 4
    lam = target[torch.arange(6), own]
    assert mixed.shape == x.shape and (lam >= 0.5).all() and (weight < 1).any()
    other = (mixed - lam[:, None, None, None] * x) / (1 - lam[:, None, None, None]).clamp(min=1e-6)
    mixed_rows = lam < 1
    assert all(  # what is added is another example of the batch, whole
        any(torch.allclose(other[i], x[j], atol=1e-4) for j in range(6))
        for i in torch.nonzero(mixed_rows).flatten().tolist()
    )


def test_mixup_soft_targets():
    x, lengths = torch.randn(16, 8, 20), torch.randint(5, 21, (16,))
    labels = torch.arange(16) % 4
    torch.manual_seed(0)
    mixed, mixed_lengths, target = Mixup(p=1.0, alpha=0.4)(x, lengths, labels, 4)
    assert mixed.shape == x.shape and target.shape == (16, 4)
    assert torch.allclose(target.sum(1), torch.ones(16))
    assert torch.equal(
        target.argmax(1)[target.max(1).values > 0.5], labels[target.max(1).values > 0.5]
    )
    assert (mixed_lengths >= lengths).all()
    same, same_lengths, onehot = Mixup(p=0.0)(x, lengths, labels, 4)
    assert torch.equal(same, x) and torch.equal(onehot, F.one_hot(labels, 4).float())
    assert torch.equal(same_lengths, lengths)  # a clip not mixed keeps its own length
    _, _, wide = Mixup(p=1.0)(x, lengths, labels, 6)  # classes 4 and 5 absent from the batch
    assert wide.shape == (16, 6) and not wide[:, 4:].any()


def test_soft_target_loss_matches_hard_label_loss():
    from ser.models import CNN2D
    from ser.tasks import EmotionClassifier

    model = EmotionClassifier(CNN2D, 4, 16, SR, label_smoothing=0.1)  # 16 bins: 4 pooling blocks
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    hard = model.loss(logits, {"label": labels})
    soft = model.loss(logits, {"label": labels, "target": F.one_hot(labels, 4).float()})
    assert torch.allclose(hard, soft)


@pytest.mark.parametrize(
    "build, option",
    [
        (lambda: Gain(p=1.5), "p=1.5"),
        (lambda: AddNoise(p=-0.1), "p=-0.1"),
        (lambda: AddNoise(snr_db=(30.0, 10.0)), "snr_db"),
        (lambda: AddNoise(noise_dir="/no/such/noise"), "noise_dir"),
        (lambda: Speed(factors=[]), "factors"),
        (lambda: TimeStretch(rates=[0.0]), "rates"),
        (lambda: TimeMask(max_width=-1), "max_width"),
        (lambda: Mixup(alpha=0.0), "alpha"),
    ],
)
def test_invalid_settings_name_the_option(build, option):
    with pytest.raises(SERError, match=option.replace(".", r"\.").replace("-", r"\-")):
        build()


def augmented_module(root: Path, offline_copies: int = 0, seed: int = 42) -> RAVDESS:
    augment = Augmentation(
        waveform=[AddNoise(p=1.0, snr_db=(0.0, 0.0)), Gain(p=1.0)],
        features=[TimeMask(p=1.0, max_width=10)], mixup=Mixup(p=1.0),
        offline_copies=offline_copies,
    )  # fmt: skip
    split = SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"], seed=seed)
    return RAVDESS(root=str(root), split=split, batch_size=4, max_seconds=0.5, augment=augment)


def test_augmentation_only_while_training(ravdess_root: Path):
    dm = augmented_module(ravdess_root)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    clean = dm.on_after_batch_transfer(dict(batch), 0)  # no trainer: inference
    for training in (False, True):
        dm.trainer = SimpleNamespace(training=training)
        out = dm.on_after_batch_transfer(dict(batch), 0)
        assert out["features"].dtype == torch.float32
        assert out["features"].shape == clean["features"].shape
        assert torch.equal(out["features"], clean["features"]) != training
        assert ("target" in out) == training


def test_offline_copies_counted_and_deterministic(ravdess_root: Path):
    def train_waves():
        dm = augmented_module(ravdess_root, offline_copies=2, seed=7)
        dm.setup("fit")
        return dm.datasets["train"]

    first, second = train_waves(), train_waves()
    n = 2 * 4 * 2  # 2 actors x 4 emotions x 2 clips
    assert len(first) == 3 * n and first.labels == first.labels[:n] * 3
    assert all(torch.equal(a, b) for a, b in zip(first.waves, second.waves, strict=True))
    assert not torch.equal(first.waves[0], first.waves[n])  # a copy is not the original
    assert first.waves[n].shape == first.waves[0].shape


def test_offline_copies_need_augmentations(ravdess_root: Path):
    with pytest.raises(SERError, match="offline_copies"):
        RAVDESS(root=str(ravdess_root), augment=Augmentation(offline_copies=1))


@pytest.mark.parametrize(
    ("fragment", "n_wave", "n_spec"),
    [
        ("onthefly.yaml", 3, 2),
        ("offline.yaml", 4, 0),
        ("specaugment.yaml", 0, 2),
        ("speed.yaml", 1, 0),
    ],
)
def test_augment_fragment_through_the_cli(
    fragment, n_wave, n_spec, ravdess_root: Path, tmp_path, monkeypatch
):
    from ser.cli import main

    monkeypatch.chdir(tmp_path)
    data = REPO / "configs" / "data"
    cli = main([
        "fit", "--config", str(REPO / "configs" / "cnn2d.yaml"),
        "--data", str(data / "ravdess.yaml"), "--data", str(data / "augment" / fragment),
        "--data.root", str(ravdess_root), "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]', "--data.batch_size", "4",
        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    dm = cli.datamodule
    assert type(dm).__name__ == "RAVDESS"
    pipeline = dm.pipeline
    assert (len(pipeline.wave_augment), len(pipeline.feature_augment)) == (n_wave, n_spec)
    assert cli.trainer.global_step == 1
    # modules stay out of the checkpoint's plain data: the spec holds the eval pipeline only
    assert set(dm.pipeline_spec) == {"frontend", "denoise", "normalization"}
    assert cli.model.pipeline_spec == dm.pipeline_spec  # linked into the task's checkpoint spec
    copies = pipeline.offline_copies
    assert len(dm.datasets["train"]) == (1 + copies) * 16  # 2 actors x 4 emotions x 2 clips


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augmentations_on_cuda_match_cpu_draws():
    wave, lengths = tones()
    for aug in [*ALL_WAVE, TimeMask(p=1.0), Mixup(p=1.0)]:
        torch.manual_seed(0)
        if isinstance(aug, Mixup):
            x = torch.randn(4, 8, 50)
            out = aug(x.cuda(), lengths.cuda() // 320, torch.arange(4).cuda(), 4)
            assert out[2].device.type == "cuda" and out[2].shape == (4, 4)
            continue
        if isinstance(aug, TimeMask):
            out, out_lengths = aug(torch.randn(4, 8, 50).cuda(), lengths.cuda() // 320)
        else:
            out, out_lengths = aug.cuda()(wave.cuda(), lengths.cuda(), SR)
            torch.manual_seed(0)
            _, cpu_lengths = aug.cpu()(wave, lengths, SR)
            assert torch.equal(out_lengths.cpu(), cpu_lengths)  # the draws do not depend on device
            assert (out * ~valid_mask(out_lengths, out.shape[1]) == 0).all()
        assert out.device.type == "cuda" and out.dtype == torch.float32
