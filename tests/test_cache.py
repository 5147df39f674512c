"""The decoded-audio cache: reuse, rebuild on change, concurrent builders, damaged files."""

import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser.audio import RESAMPLER, read_audio
from ser.data import RAVDESS
from ser.data.cache import AudioCache
from ser.data.splits import SplitSpec
from ser.io import cache_root

SPLIT = {"split": SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"])}


class Counting(RAVDESS):
    calls: list[Path] = []

    def decode(self, path: Path) -> torch.Tensor:
        Counting.calls.append(path)
        return super().decode(path)


def setup_counting(root: Path, **kwargs) -> Counting:
    Counting.calls = []
    dm = Counting(root=str(root), **SPLIT, **kwargs)
    dm.setup("fit")
    return dm


def test_second_setup_does_not_decode_and_gives_the_same_audio(ravdess_root: Path):
    first = setup_counting(ravdess_root)
    assert len(Counting.calls) == 48
    files = list((cache_root() / "audio").glob("Counting-*.cache"))
    assert len(files) == 1 and not list(files[0].parent.glob(".*.tmp"))  # written, no leftovers
    second = setup_counting(ravdess_root)
    assert Counting.calls == []
    for stage in ("train", "val", "test"):
        for a, b in zip(first.datasets[stage].waves, second.datasets[stage].waves, strict=True):
            assert torch.equal(a, b)
    reference = read_audio(first.datasets["test"].clips[0].path, 16000)
    assert torch.equal(second.datasets["test"].waves[0], reference)


def test_settings_or_file_change_rebuilds(ravdess_root: Path):
    setup_counting(ravdess_root)
    setup_counting(ravdess_root, sample_rate=8000)  # another decode setting: another cache
    assert len(Counting.calls) == 48
    changed = ravdess_root / "Actor_01" / "03-01-05-01-01-01-01.wav"
    ramp = np.linspace(-0.1, 0.1, 4000, dtype=np.float32)  # not constant: that is skipped as silent
    sf.write(changed, ramp, 16000)
    dm = setup_counting(ravdess_root)
    assert Counting.calls == [changed]  # only the changed file is decoded again
    wave = next(w for c, w in zip(dm.datasets["train"].clips, dm.datasets["train"].waves,
                                  strict=True) if c.path == changed)  # fmt: skip
    assert wave.numel() == 4000 and torch.allclose(wave, torch.from_numpy(ramp), atol=1e-4)


def test_a_cache_of_another_resampler_is_rebuilt_not_mixed(ravdess_root: Path, monkeypatch):
    # A cache written before the resampler was part of the key (torchaudio's, keyed on the
    # rate alone), filled with what another resampler would have made of each file.
    dm = Counting(root=str(ravdess_root), **SPLIT)
    paths = [c.path for c in dm.clips()]
    old = AudioCache("Counting", ravdess_root, {"sample_rate": 16000})
    old.decode_all(paths, lambda p: read_audio(p, 16000) * 0.5)
    first = setup_counting(ravdess_root)
    assert len(Counting.calls) == 48  # not read from the old file
    reference = read_audio(first.datasets["test"].clips[0].path, 16000)
    assert torch.equal(first.datasets["test"].waves[0], reference)
    # another soxr quality (or version) is another decoder: its own cache
    monkeypatch.setattr("ser.data.base.RESAMPLER", {**RESAMPLER, "quality": "VHQ"})
    setup_counting(ravdess_root)
    assert len(Counting.calls) == 48
    assert len(list((cache_root() / "audio").glob("Counting-*.cache"))) == 3


def test_no_cache_decodes_every_time(ravdess_root: Path):
    setup_counting(ravdess_root, cache=False)
    setup_counting(ravdess_root, cache=False)
    assert len(Counting.calls) == 48 and not (cache_root() / "audio").exists()


def test_concurrent_builders_decode_once_and_agree(tmp_path: Path):
    paths = [tmp_path / f"{i}.wav" for i in range(6)]
    for i, p in enumerate(paths):
        sf.write(p, np.full(100, i / 10, dtype=np.float32), 16000)
    calls, results = [], {}

    def slow_decode(path: Path) -> torch.Tensor:
        calls.append(path)
        time.sleep(0.05)
        return read_audio(path, 16000)

    def build(name: str) -> None:
        cache = AudioCache("Toy", tmp_path, {"sample_rate": 16000}, tmp_path / "cache")
        results[name] = cache.decode_all(paths, slow_decode)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == len(paths)  # the second builder waited and reused the first's work
    for a, b in zip(results["a"], results["b"], strict=True):
        assert torch.equal(a, b)


def test_damaged_cache_file_is_rebuilt(ravdess_root: Path, caplog):
    setup_counting(ravdess_root)
    (cache_file,) = (cache_root() / "audio").glob("Counting-*.cache")
    cache_file.write_bytes(b"garbage")
    setup_counting(ravdess_root)
    assert len(Counting.calls) == 48 and "rebuilding" in caplog.text


def test_a_killed_build_leaves_nothing_behind_after_the_next_run(ravdess_root: Path):
    setup_counting(ravdess_root)
    (cache_file,) = (cache_root() / "audio").glob("Counting-*.cache")
    # what a build killed while writing leaves: its temporary file beside the cache file
    leftover = cache_file.with_name(f".{cache_file.name}.k1ll3d.tmp")
    leftover.write_bytes(cache_file.read_bytes()[:1000])
    cache_file.write_bytes(cache_file.read_bytes()[:-3])  # and a cut file is not trusted
    setup_counting(ravdess_root)
    assert len(Counting.calls) == 48  # rebuilt
    assert not leftover.exists() and not list(cache_file.parent.glob(".*.tmp"))


def test_clips_are_views_of_one_memory_map(ravdess_root: Path):
    """The builder, too, keeps the mapped file's audio, not a private copy of every clip."""
    for _ in range(2):  # the process that builds, and one that reuses
        waves = setup_counting(ravdess_root).datasets["train"].waves
        bases = {w.untyped_storage().data_ptr() for w in waves}
        assert len(bases) == 1  # one storage (the map) under every clip
