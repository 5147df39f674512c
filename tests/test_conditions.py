"""Recording-condition augmentation: reverberation, telephone band, clipping, coloured and babble
noise (ser.transforms.conditions, ser.transforms.augment.AddNoise)."""

from __future__ import annotations

import math

import pytest
import torch

from ser.errors import SERError
from ser.transforms.augment import AddNoise, coloured_noise, rms
from ser.transforms.conditions import Clipping, Codec, Reverb, Telephone, simulated_rirs

RATE = 16000


def sine(freq: float, seconds: float = 0.5) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(seconds * RATE)) / RATE)


def decay_time(rir: torch.Tensor) -> float:
    """RT60 from the Schroeder integral's fall from -5 to -25 dB (T20), as room acoustics does."""
    energy = rir.double().square().flip(0).cumsum(0).flip(0)
    db = 10 * torch.log10(energy / energy[0])
    t5, t25 = int((db > -5).sum()), int((db > -25).sum())
    return 3 * (t25 - t5) / RATE


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_simulated_rooms_decay_over_their_reverberation_time(rt60: float):
    (rir,) = simulated_rirs(RATE, (rt60, rt60), 1, seed=3)
    assert decay_time(rir) == pytest.approx(rt60, rel=0.2)
    assert rir.norm() == pytest.approx(1.0) and rir.abs().argmax() == 0  # direct path first


def test_reverb_smears_a_click_into_the_room_and_keeps_level_and_padding():
    wave = torch.zeros(2, RATE)
    wave[:, 100] = 1.0
    lengths = torch.tensor([RATE, RATE // 2])
    out, out_lengths = Reverb(p=1.0, rt60=(0.5, 0.5), n_rirs=1)(wave, lengths, RATE)
    assert torch.equal(out_lengths, lengths) and out.shape == wave.shape
    assert torch.all(out[1, RATE // 2 :] == 0)  # the tail does not spill into the padding
    torch.testing.assert_close(rms(out, lengths), rms(wave, lengths))
    tail = out[0, 100 + int(0.05 * RATE) : 100 + int(0.3 * RATE)]
    assert tail.abs().max() > 1e-3 and out[0, :100].abs().max() < 1e-6  # after the click only


def test_telephone_keeps_the_voice_band_and_drops_what_lies_outside():
    wave = torch.stack([sine(1000), sine(6000), sine(100)])
    lengths = torch.full((3,), wave.shape[1])
    out, _ = Telephone(p=1.0)(wave, lengths, RATE)
    kept = rms(out[:, 800:], lengths - 800) / rms(wave[:, 800:], lengths - 800)
    assert kept[0] > 0.8  # 1 kHz: in the band
    assert kept[1] < 0.05  # 6 kHz: above the 4 kHz of 8 kHz sampling
    assert kept[2] < 0.3  # 100 Hz: below the band


def test_clipping_flattens_peaks_and_keeps_the_level():
    wave = sine(300)[None]
    lengths = torch.tensor([wave.shape[1]])
    out, _ = Clipping(p=1.0, level=(0.3, 0.3))(wave, lengths, RATE)
    torch.testing.assert_close(rms(out, lengths), rms(wave, lengths))
    peak = out.abs().max()
    assert (out.abs() > 0.999 * peak).float().mean() > 0.5  # most samples sit at the threshold


def test_pink_and_brown_noise_fall_with_frequency_white_does_not():
    for kind, slope in (("white", 0.0), ("pink", -3.0), ("brown", -6.0)):
        noise = coloured_noise(torch.Size([8, 2**15]), kind, torch.device("cpu"))
        power = torch.fft.rfft(noise).abs().square().mean(0)  # (F,)
        octave = 10 * math.log10(power[2000:4000].mean() / power[1000:2000].mean())
        assert octave == pytest.approx(slope, abs=0.7), kind  # dB per octave


def test_babble_and_coloured_noise_reach_the_drawn_snr():
    wave = torch.stack([sine(200 + 50 * k) for k in range(4)])
    lengths = torch.full((4,), wave.shape[1])
    for kind in ("babble", "pink"):
        out, _ = AddNoise(p=1.0, snr_db=(5.0, 5.0), kind=kind)(wave, lengths, RATE)
        noise = out - wave
        snr = 20 * torch.log10(rms(wave, lengths) / rms(noise, lengths))
        torch.testing.assert_close(snr, torch.full((4,), 5.0), atol=0.05, rtol=0)
    babble = AddNoise(p=1.0, snr_db=(0.0, 0.0), kind="babble")(wave, lengths, RATE)[0] - wave
    spectrum = torch.fft.rfft(babble[0]).abs()
    own = int(200 * wave.shape[1] / RATE)
    assert spectrum[own] < 0.05 * spectrum.max()  # the others' voices, not its own


def test_a_low_bitrate_codec_keeps_the_voice_band_and_loses_detail():
    """Opus at its highest compression (about 7 kb/s) keeps a voice's low harmonics and level but
    not the detail above them; at its lowest it is close to the original. Lengths and padding
    stay; a rate Opus does not code (22.05 kHz) goes through a rate it does."""
    t = torch.arange(RATE) / RATE
    voice = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6)) * 0.2
    hiss = 0.05 * sine(6500, 1.0)
    wave = torch.zeros(2, RATE)
    wave[0], wave[1, :12000] = voice + hiss, (voice + hiss)[:12000]
    lengths = torch.tensor([RATE, 12000])

    def error(out: torch.Tensor, target: torch.Tensor) -> float:
        return float((out - target).norm() / target.norm())

    fine, _ = Codec(1.0, "opus", (0.0, 0.0))(wave, lengths, RATE)
    coarse, kept = Codec(1.0, "opus", (1.0, 1.0))(wave, lengths, RATE)
    assert torch.equal(kept, lengths) and torch.all(coarse[1, 12000:] == 0)
    assert error(fine[0], wave[0]) < 0.2 < error(coarse[0], wave[0])

    def band(x: torch.Tensor, hz: float) -> float:
        spectrum = torch.fft.rfft(x).abs()
        return float(spectrum[int(hz) - 5 : int(hz) + 5].max())

    assert band(coarse[0], 150) > 0.5 * band(wave[0], 150)  # the fundamental stays
    assert band(coarse[0], 6500) < 0.3 * band(wave[0], 6500)  # the detail above the voice goes
    odd, _ = Codec(1.0, "opus", (0.0, 0.0))(wave, lengths, 22050)
    assert odd.shape == wave.shape and error(odd[0], wave[0]) < 0.3


@pytest.mark.parametrize(
    ("build", "message"),
    [(lambda: Reverb(rt60=(0.0, 1.0)), "rt60"), (lambda: Telephone(low_hz=3500), "low_hz"),
     (lambda: Clipping(level=(0.5, 1.5)), "level"), (lambda: AddNoise(kind="grey"), "kind"),
     (lambda: Reverb(rir_dir="/nonexistent"), "rir_dir"), (lambda: Codec(codec="gsm"), "codec"),
     (lambda: Codec(codec="mp3", level=(0.5, 1.0)), r"lie in \[0, 0.9\]")],
)  # fmt: skip
def test_bad_settings_are_one_line(build, message):
    with pytest.raises(SERError, match=message):
        build()


def test_perturbed_test_split_is_changed_alike_in_every_run(tmp_path, monkeypatch):
    from ser.data import RAVDESS
    from ser.data.splits import SplitSpec
    from ser.transforms.conditions import perturbation

    from .helpers import write_ravdess

    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess")
    data = RAVDESS(root=str(root), split=SplitSpec(test_speakers=["19", "20"],
                   val_speakers=["15", "16"]), verify=False, max_seconds=0.5)  # fmt: skip
    data.setup("test")
    clean = next(iter(data.test_dataloader()))["waveform"]
    noise = perturbation("noise 0")
    data.perturb_test(lambda wave, lengths: noise(wave, lengths, 16000))
    first, again = (next(iter(data.test_dataloader()))["waveform"] for _ in range(2))
    torch.testing.assert_close(first, again)  # the same noise in every run
    snr = 20 * torch.log10(clean.norm(dim=1) / (first - clean).norm(dim=1))
    torch.testing.assert_close(snr, torch.zeros_like(snr), atol=0.3, rtol=0)
    val = next(iter(data.val_dataloader()))["waveform"]
    assert torch.equal(val, next(iter(data.val_dataloader()))["waveform"])  # untouched


@pytest.mark.parametrize("spec", ["hum 10", "noise loud", "reverb", "opus high"])
def test_bad_perturbation_is_one_line(spec):
    from ser.transforms.conditions import perturbation

    with pytest.raises(SERError, match="--perturb"):
        perturbation(spec)


def test_a_perturbed_test_speaker_is_normalised_by_their_perturbed_recordings(
    tmp_path, monkeypatch
):
    """All of a test speaker's recordings are made in the condition, so the speaker's statistics
    are those of the changed clips (a training speaker's stay as they were)."""
    from ser.data import RAVDESS
    from ser.data.splits import SplitSpec
    from ser.transforms.conditions import perturbation

    from .helpers import write_ravdess

    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    root = write_ravdess(tmp_path / "ravdess")
    data = RAVDESS(root=str(root), split=SplitSpec(test_speakers=["19", "20"],
                   val_speakers=["15", "16"]), verify=False, normalization="speaker")  # fmt: skip
    data.setup("test")
    stats = data.pipeline.normalization.stats
    before = {speaker: stats[speaker][0].clone() for speaker in ("01", "19")}
    noise = perturbation("noise 0")
    data.perturb_test(lambda wave, lengths: noise(wave, lengths, 16000))
    stats = data.pipeline.normalization.stats
    assert (stats["19"][0] - before["19"]).abs().max() > 0.1  # noise at 0 dB fills the bands
    torch.testing.assert_close(stats["01"][0], before["01"])
