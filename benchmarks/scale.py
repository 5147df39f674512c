"""Data at scale: the decoded-audio cache and the data path on generated corpora of 1 h, 10 h...

For each size, a corpus in RAVDESS's layout is made from the demo generator's 384 clips
(``ser.data.demo``), tiled: copy ``k`` of actor ``AA`` is the folder ``Actor_AA_kK`` with the same
file names (hard links, so the source costs disk once; the clips repeat, so ``verify`` is off).
Then, each in a fresh process:

- build: the cache built from nothing by one process (seconds, peak RSS), and its size on disk;
- 1 rank / 2 ranks: set-up from the built cache and one epoch of the training loader (crop +
  collate, batch 32, 3 s crops; each rank its shard, as under DDP), per rank: epoch seconds, peak
  RSS (``VmHWM``: it counts the shared mapped pages in every rank), and PSS (proportional set size:
  shared pages split between the processes that map them), read while all ranks are alive, in
  total and of mapped files; for 2 ranks the cache is first built by both at once (one builds,
  one waits), then again from the built cache;
- model step: median seconds of a CNN2D (configs/cnn2d.yaml) training step on a batch of 32
  (LogMel on the batch), after warm-up, to put the data path beside the model's own time.

    python benchmarks/scale.py --work /tmp/ser-scale --hours 1 10
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ser

import argparse
import multiprocessing as mp
import os
import shutil
import time


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def smaps_mb(field: str) -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_corpus(work: Path, hours: float) -> tuple[Path, float]:
    """The tiled corpus of at least ``hours`` of audio; (root, its hours)."""
    import soundfile as sf

    from ser.data.demo import synthesize_corpus

    base = work / "demo"
    if not (base / "Actor_01").is_dir():
        synthesize_corpus(base)
    files = sorted(base.glob("Actor_*/*.wav"))
    seconds = sum(sf.info(f).duration for f in files)
    copies = max(1, round(hours * 3600 / seconds))
    root = work / f"corpus_{hours:g}h"
    if not root.is_dir():
        tmp = work / f".corpus_{hours:g}h"
        shutil.rmtree(tmp, ignore_errors=True)
        for k in range(copies):
            for f in files:
                target = tmp / f"{f.parent.name}_k{k}" / f.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, target)
        tmp.rename(root)
    return root, copies * seconds / 3600


def data_module(root: Path):
    from ser.data import RAVDESS
    from ser.data.splits import SplitSpec

    return RAVDESS(root=str(root), verify=False, max_seconds=3.0, batch_size=32,
                   split=SplitSpec("random", test_ratio=0.1, val_ratio=0.05))  # fmt: skip


def rank_job(root: str, cache: str, rank: int, world: int, queue, barrier) -> None:
    """Set up from the cache (building it if absent) and run one epoch of this rank's shard."""
    os.environ["SER_CACHE_DIR"] = cache
    import torch
    from torch.utils.data import DataLoader

    from ser.data.dataset import EpochSampler, collate

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = data_module(Path(root))
    data.setup("fit")
    setup = time.perf_counter() - start
    train = data.datasets["train"]
    loader = DataLoader(train, batch_size=32, sampler=EpochSampler(len(train), 0, rank, world),
                        collate_fn=collate)  # fmt: skip
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["waveform"].shape[0]
    epoch = time.perf_counter() - start
    barrier.wait()  # every rank maps the cache now: PSS splits the shared pages between them
    pss, pss_file = smaps_mb("Pss"), smaps_mb("Pss_File")
    barrier.wait()
    queue.put({
        "rank": rank, "setup_s": setup, "epoch_s": epoch, "clips": n,
        "peak_rss_mb": status_kib("VmHWM") / 1024, "pss_mb": pss, "pss_file_mb": pss_file,
    })  # fmt: skip


def run_ranks(root: Path, cache: Path, world: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(world)
    procs = [ctx.Process(target=rank_job, args=(str(root), str(cache), r, world, queue, barrier))
             for r in range(world)]  # fmt: skip
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a rank failed with exit code {p.exitcode}")
    return sorted(results, key=lambda r: r["rank"])


def model_step_seconds(n_steps: int = 5) -> float:
    import statistics
    from functools import partial

    import torch

    from ser.models import CNN2D
    from ser.transforms import FeaturePipeline
    from ser.transforms.frontends import LogMel

    pipeline = FeaturePipeline(partial(LogMel, hop_ms=16.0), 16000, None, None)
    net = CNN2D(8, pipeline.n_features, 16000, channels=[16, 32, 64, 128], convs_per_block=2)
    optimizer = torch.optim.AdamW(net.parameters())
    wave, lengths = torch.randn(32, 48000), torch.full((32,), 48000)
    labels = torch.randint(8, (32,))
    times = []
    for _ in range(n_steps + 2):
        start = time.perf_counter()
        features, feature_lengths = pipeline(wave, lengths)
        loss = torch.nn.functional.cross_entropy(net(features, feature_lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for corpora and caches")
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 10.0])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    step = model_step_seconds()
    rows = []
    for hours in args.hours:
        root, real_hours = make_corpus(args.work, hours)
        cache = args.work / f"cache_{hours:g}h"
        shutil.rmtree(cache, ignore_errors=True)
        (build,) = run_ranks(root, cache, 1)  # builds the cache, then one epoch
        size_gb = sum(f.stat().st_size for f in (cache / "audio").glob("*.cache")) / 1e9
        (one,) = run_ranks(root, cache, 1)  # from the built cache
        shutil.rmtree(cache)
        two = run_ranks(root, cache, 2)  # both ranks start with no cache: one builds, one waits
        two_warm = run_ranks(root, cache, 2)
        rows.append((real_hours, build, size_gb, one, two, two_warm))
        shutil.rmtree(cache)

    print(f"\nmodel step (CNN2D, batch 32 x 3 s, fp32, 1 thread): {step:.3f} s")
    print("hours | clips/epoch | cache build s | build peak RSS MB | cache GB | ranks | setup s "
          "| data epoch s | peak RSS MB | PSS MB | PSS files MB | model epoch s (est.)")  # fmt: skip
    for hours, build, size_gb, one, two, two_warm in rows:
        print(f"{hours:5.1f} | {one['clips']:11d} | {build['setup_s']:13.1f} | "
              f"{build['peak_rss_mb']:17.0f} | {size_gb:8.2f} |")  # fmt: skip
        for label, ranks in (("1", [one]), ("2 (cold)", two), ("2", two_warm)):
            for r in ranks:
                print(f"{'':5} | {r['clips']:11d} | {'':13} | {'':17} | {'':8} | {label:>5} r{r['rank']}"
                      f" | {r['setup_s']:7.1f} | {r['epoch_s']:12.1f} | {r['peak_rss_mb']:11.0f} | "
                      f"{r['pss_mb']:6.0f} | {r['pss_file_mb']:12.0f} | "
                      f"{-(-r['clips'] // 32) * step:10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
