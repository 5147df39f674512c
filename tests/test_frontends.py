import librosa
import numpy as np
import pytest
import torch

from ser.transforms import MFCC, LogMel, Waveform
from ser.transforms.frontends import standardize


@pytest.fixture
def signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    return (0.5 * np.sin(2 * np.pi * 300 * t) + 0.1 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def test_logmel_matches_librosa(signal):
    frontend = LogMel(16000, n_mels=64, win_ms=25, hop_ms=10, top_db=80.0, normalize=False)
    x, frames = frontend(torch.from_numpy(signal)[None], torch.tensor([signal.size]))
    mel = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=frontend.n_fft, win_length=frontend.win_length,
        hop_length=frontend.hop_length, n_mels=64,
    )  # fmt: skip
    reference = librosa.power_to_db(mel, top_db=80.0)
    assert x.shape == (1, 64, reference.shape[1])
    assert int(frames) == reference.shape[1]
    np.testing.assert_allclose(x[0].numpy(), reference, atol=1e-3)


def test_mfcc_matches_librosa(signal):
    frontend = MFCC(16000, n_mfcc=40, n_mels=64, top_db=None, normalize=False)
    x, _ = frontend(torch.from_numpy(signal)[None], torch.tensor([signal.size]))
    mel = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=frontend.n_fft, win_length=frontend.win_length,
        hop_length=frontend.hop_length, n_mels=64,
    )  # fmt: skip
    reference = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=40)
    assert x.shape == (1, 40, reference.shape[1])
    np.testing.assert_allclose(x[0].numpy(), reference, atol=1e-2)


def test_padding_does_not_change_a_clip(signal):
    """A clip's features are the same alone or padded in a batch with a longer clip."""
    frontend = LogMel(16000)
    short = torch.from_numpy(signal[:8000])
    alone, n_alone = frontend(short[None], torch.tensor([8000]))
    batch = torch.zeros(2, 16000)
    batch[0, :8000], batch[1] = short, torch.from_numpy(signal)
    padded, n_padded = frontend(batch, torch.tensor([8000, 16000]))
    assert int(n_padded[0]) == int(n_alone[0]) == alone.shape[-1]
    valid = int(n_alone[0]) - 1  # the last frame's window reaches into the padding
    torch.testing.assert_close(padded[0, :, :valid], alone[0, :, :valid], atol=1e-3, rtol=1e-3)
    assert padded[0, :, int(n_padded[0]) :].abs().max() == 0  # padding zeroed after normalising


def test_standardize_uses_valid_frames_only():
    x = torch.randn(2, 3, 50) * 4 + 7
    lengths = torch.tensor([50, 20])
    y = standardize(x, lengths)
    assert torch.allclose(y[1, :, :20].mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(y[1, :, :20].std(unbiased=False), torch.tensor(1.0), atol=1e-3)
    assert y[1, :, 20:].abs().max() == 0


@pytest.mark.parametrize(
    "make, n_features",
    [
        (lambda sr: LogMel(sr, n_mels=64), 64),
        (lambda sr: MFCC(sr, n_mfcc=40, n_mels=64), 40),
        (Waveform, 1),
    ],
    ids=["logmel", "mfcc", "waveform"],
)
def test_frontend_shapes(make, n_features):
    frontend = make(16000)  # every front-end takes the sample rate first
    assert frontend.n_features == n_features
    x, lengths = frontend(torch.randn(3, 8000), torch.tensor([8000, 4000, 100]))
    assert x.shape[:2] == (3, n_features) and x.dtype == torch.float32
    assert (
        lengths.tolist() == sorted(lengths.tolist(), reverse=True)
        and int(lengths.max()) <= x.shape[-1]
    )


def test_waveform_frontend_standardizes():
    x, lengths = Waveform(16000)(torch.randn(2, 1000) * 5, torch.tensor([1000, 600]))
    assert x.shape == (2, 1, 1000)
    for clip, n in zip(x[:, 0], lengths.tolist(), strict=True):  # over each clip's valid samples
        assert abs(float(clip[:n].mean())) < 1e-5
        assert abs(float(clip[:n].std(unbiased=False)) - 1) < 1e-3
        assert not clip[n:].any()  # padding stays 0


def test_top_db_floors_digital_silence():
    wave = torch.zeros(1, 16000)
    wave[0, 8000:] = torch.randn(8000) * 0.1
    x, _ = LogMel(16000, top_db=60.0, normalize=False)(wave, torch.tensor([16000]))
    assert float(x.max() - x.min()) == pytest.approx(60.0, abs=1e-3)


def test_mel_image_is_a_fixed_size_picture_of_the_valid_frames():
    from ser.transforms import MelImage

    torch.manual_seed(0)
    image = MelImage(16000, image_size=(50, 150), n_mels=64, hop_ms=10.0)
    wave = torch.randn(1, 16000) * torch.linspace(0, 1, 16000)  # (1, T): 1 s, a rising level
    padded = torch.cat([wave, torch.zeros(1, 8000)], dim=1)  # (1, 1.5 s): the same clip, padded
    batch = torch.cat([padded, torch.randn(1, 24000)])  # (2, T)
    out, lengths = image(batch, torch.tensor([16000, 24000]))
    alone, _ = image(wave, torch.tensor([16000]))
    assert out.shape == (2, 50, 150) and lengths.tolist() == [150, 150]
    assert torch.allclose(out[0], alone[0], atol=1e-5)  # padding is not part of the picture
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    # Unpadded, it is the torch bilinear resize of the min-max scaled log-mel.
    db = image.log_mel(wave)  # (1, 64, F)
    scaled = (db - db.min()) / (db.max() - db.min())
    expected = torch.nn.functional.interpolate(
        scaled[:, None], size=(50, 150), mode="bilinear", align_corners=False
    )[:, 0]
    assert torch.allclose(alone, (expected - 0.5) / 0.5, atol=1e-4)
