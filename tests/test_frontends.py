import librosa
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ser.errors import SERError
from ser.transforms import MFCC, LogMel, MelImage, Waveform
from ser.transforms.frontends import standardize


@pytest.fixture
def signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    return (0.5 * np.sin(2 * np.pi * 300 * t) + 0.1 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def test_logmel_matches_librosa(signal):
    """The defaults are the documented ones: 64 mels, 25-ms windows (a 512-point FFT at 16 kHz),
    10-ms hops, floored 80 dB below the loudest bin."""
    frontend = LogMel(16000, normalize=False)
    x, frames = frontend(torch.from_numpy(signal)[None], torch.tensor([signal.size]))
    mel = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64
    )
    reference = librosa.power_to_db(mel, top_db=80.0)
    assert x.shape == (1, 64, reference.shape[1])
    assert int(frames) == reference.shape[1]
    np.testing.assert_allclose(x[0].numpy(), reference, atol=1e-3)


@pytest.mark.parametrize(("n_mfcc", "n_mels"), [(None, None), (13, 40)])
def test_mfcc_matches_librosa(signal, n_mfcc, n_mels):
    """Defaults 40 coefficients of 64 mels; other counts as asked."""
    sizes = {} if n_mfcc is None else {"n_mfcc": n_mfcc, "n_mels": n_mels}
    frontend = MFCC(16000, top_db=None, normalize=False, **sizes)
    n_mfcc, n_mels = sizes.get("n_mfcc", 40), sizes.get("n_mels", 64)
    assert frontend.n_features == n_mfcc
    x, _ = frontend(torch.from_numpy(signal)[None], torch.tensor([signal.size]))
    mel = librosa.feature.melspectrogram(
        y=signal, sr=16000, n_fft=frontend.n_fft, win_length=frontend.win_length,
        hop_length=frontend.hop_length, n_mels=n_mels,
    )  # fmt: skip
    reference = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=n_mfcc)
    assert x.shape == (1, n_mfcc, reference.shape[1])
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


@pytest.mark.parametrize("top_db", [60.0, None])
def test_top_db_floors_digital_silence(top_db):
    """As asked, or 80 dB by default."""
    wave = torch.zeros(1, 16000)
    wave[0, 8000:] = torch.randn(8000) * 0.1
    options = {} if top_db is None else {"top_db": top_db}
    x, _ = LogMel(16000, normalize=False, **options)(wave, torch.tensor([16000]))
    assert float(x.max() - x.min()) == pytest.approx(top_db or 80.0, abs=1e-3)


def picture(db: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference picture of a whole clip's log-mel ``(1, n_mels, F)``: min-max scaled,
    torch's bilinear resize to ``size``, mapped to [-1, 1]."""
    scaled = (db - db.min()) / (db.max() - db.min())
    resized = torch.nn.functional.interpolate(
        scaled[:, None], size=size, mode="bilinear", align_corners=False
    )[:, 0]
    return (resized - 0.5) / 0.5


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
    assert torch.allclose(alone, picture(db, (50, 150)), atol=1e-4)


@pytest.mark.parametrize("sample_rate", [22050, 44100])
def test_logmel_matches_librosa_at_other_rates_and_bands(sample_rate: int):
    """Another rate, window, hop and band: the filterbank follows the rate and the band."""
    rng = np.random.default_rng(1)
    signal = (0.3 * rng.standard_normal(sample_rate)).astype(np.float32)
    frontend = LogMel(sample_rate, n_mels=40, win_ms=30, hop_ms=12, f_min=60.0, f_max=7000.0,
                      top_db=None, normalize=False)  # fmt: skip
    x, _ = frontend(torch.from_numpy(signal)[None], torch.tensor([signal.size]))
    mel = librosa.feature.melspectrogram(
        y=signal, sr=sample_rate, n_fft=frontend.n_fft, win_length=frontend.win_length,
        hop_length=frontend.hop_length, n_mels=40, fmin=60.0, fmax=7000.0,
    )  # fmt: skip
    np.testing.assert_allclose(x[0].numpy(), librosa.power_to_db(mel, top_db=None), atol=1e-3)


@settings(max_examples=100, deadline=None)
@given(
    sample_rate=st.sampled_from([8000, 11025, 16000, 22050, 24000, 44100, 48000]),
    win_ms=st.floats(1.0, 64.0),
    hop_ms=st.floats(1.0, 32.0),
)
@example(sample_rate=16000, win_ms=32.0, hop_ms=10.0)  # a window of 512 samples: a 512-point FFT
@example(sample_rate=16000, win_ms=32.0625, hop_ms=10.0)  # 513 samples: 1024 points
def test_window_and_hop_are_the_asked_durations_at_any_rate(sample_rate, win_ms, hop_ms):
    """To the nearest sample; the FFT is the smallest power of two that holds the window."""
    frontend = LogMel(sample_rate, win_ms=win_ms, hop_ms=hop_ms)
    assert abs(frontend.win_length - sample_rate * win_ms / 1000) <= 0.5
    assert abs(frontend.hop_length - sample_rate * hop_ms / 1000) <= 0.5
    n_fft = frontend.n_fft
    assert n_fft & (n_fft - 1) == 0 and n_fft // 2 < frontend.win_length <= n_fft


@pytest.mark.parametrize("n_samples", [1, 159, 160, 161, 8000, 16001])
def test_frames_count_what_the_stft_gives_a_clip_of_that_length(n_samples: int):
    frontend = LogMel(16000, normalize=False)
    x, frames = frontend(torch.randn(1, n_samples), torch.tensor([n_samples]))
    assert frames.dtype == torch.int64 and frames.tolist() == [x.shape[-1]]
    assert int(frontend.frames(torch.tensor([n_samples]))) == n_samples // 160 + 1


@pytest.mark.parametrize(
    "make",
    [lambda: LogMel(16000, normalize=False), lambda: MelImage(16000, n_mels=32)],
    ids=["logmel-top-db", "mel-image"],
)
def test_a_clip_is_scaled_by_its_own_level_not_its_batch_neighbours(make):
    """The dB floor (top_db) and the picture's min-max come from each clip alone: a quiet clip
    (80 dB down, padded) and a loud one give the same features together as alone."""
    frontend = make()
    quiet = 1e-4 * torch.randn(8000, generator=torch.Generator().manual_seed(1))  # (8000,)
    loud = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    batch = torch.zeros(2, 16000)
    batch[0, :8000], batch[1] = quiet, loud
    together, _ = frontend(batch, torch.tensor([8000, 16000]))
    for i, (clip, n_samples) in enumerate([(quiet, 8000), (loud, 16000)]):
        alone, _ = frontend(clip[None], torch.tensor([n_samples]))
        n = alone.shape[-1] - (i == 0 and not isinstance(frontend, MelImage))  # meets padding
        torch.testing.assert_close(together[i, :, :n], alone[0, :, :n], atol=1e-3, rtol=1e-3)


def test_standardize_keeps_silence_finite_and_scales_a_one_frame_clip():
    x = torch.stack([torch.full((3, 4), 2.5), torch.randn(3, 4)])  # (2, 3, 4)
    y = standardize(x, torch.tensor([4, 1]))
    assert torch.equal(y[0], torch.zeros(3, 4))  # a constant clip: zeros, not NaN
    first = x[1, :, 0]  # the one valid frame, standardised over its 3 values
    expected = (first - first.mean()) / (first.var(unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(y[1, :, 0], expected)
    assert not y[1, :, 1:].any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_mels": 1},
        {"win_ms": 1.0, "hop_ms": 1.0},
        {"top_db": 1.0},
        {"top_db": None},
        {"f_max": 8000.0},
        {"f_min": 7999.0},
    ],  # fmt: skip
)
def test_logmel_takes_the_edges_of_its_ranges(kwargs):
    assert LogMel(16000, **kwargs).n_features == kwargs.get("n_mels", 64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_mels": 0},
        {"win_ms": 0.0},
        {"hop_ms": 0.0},
        {"top_db": 0.0},
        {"f_max": 8001.0},
        {"f_min": 8000.0},
        {"f_min": 4000.0, "f_max": 4000.0},
        {"f_min": 5000.0, "f_max": 4000.0},
        {"f_min": -1.0},
    ],  # fmt: skip
)
def test_logmel_refuses_settings_outside_them_naming_itself(kwargs):
    with pytest.raises(SERError, match=r"^MFCC: "):
        MFCC(16000, n_mfcc=1, **kwargs)


@pytest.mark.parametrize(("n_mfcc", "ok"), [(1, True), (32, True), (0, False), (33, False)])
def test_mfcc_count_is_between_one_and_the_mels(n_mfcc: int, ok: bool):
    if ok:
        assert MFCC(16000, n_mfcc=n_mfcc, n_mels=32).n_features == n_mfcc
    else:
        with pytest.raises(SERError, match=r"^MFCC: n_mfcc \(\d+\) must be between 1 and"):
            MFCC(16000, n_mfcc=n_mfcc, n_mels=32)


def test_mfcc_stores_no_tensor_of_its_own_in_a_checkpoint():
    """The DCT is rebuilt from the settings: a checkpoint of an MFCC model holds the same
    front-end tensors as a log-mel one."""
    assert set(MFCC(16000).state_dict()) == set(LogMel(16000).state_dict())


def test_mel_image_follows_its_log_mel_settings_and_sizes():
    image = MelImage(16000, image_size=(20, 30), n_mels=32, hop_ms=20.0)
    assert image.n_features == 20 and image.mel.mel_scale.n_mels == 32
    assert image.hop_length == 320
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    out, _ = image(wave, torch.tensor([16000]))
    db = LogMel(16000, n_mels=32, hop_ms=20.0, normalize=False).log_mel(wave)  # (1, 32, F)
    torch.testing.assert_close(out, picture(db, (20, 30)), atol=1e-4, rtol=0)
    with pytest.raises(SERError, match=r"^MelImage: image_size=\[0, 30\]"):
        MelImage(16000, image_size=(0, 30))


def test_mel_image_spans_the_whole_range_even_for_a_narrow_one():
    """A clip whose log-mel varies by less than 1 dB still fills [-1, 1]."""
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    out, _ = MelImage(16000, top_db=0.5)(wave, torch.tensor([16000]))
    assert float(out.min()) == pytest.approx(-1.0, abs=1e-3)  # the floor
    assert float(out.max()) > 0.5  # the loudest bins, averaged a little by the resize
