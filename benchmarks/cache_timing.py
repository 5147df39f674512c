"""Decoded-audio cache: setup time without a cache, building it, and with it; one training epoch
of a config before and after the cache exists. Prints a table.

    python benchmarks/cache_timing.py --root PATH/TO/RAVDESS \
        --config configs/cnn2d.yaml --data configs/data/ravdess.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ser

import argparse
import os
import tempfile
import time
from pathlib import Path

import lightning as L


class EpochTimer(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def timed_fit(args: argparse.Namespace, log_dir: str) -> tuple[float, float, float]:
    """(setup seconds, first-epoch seconds, whole command seconds) of a one-epoch ``ser fit``."""
    from ser.cli import SERCLI, main

    timer = EpochTimer()
    setup_seconds = {}
    original = SERCLI.before_fit if hasattr(SERCLI, "before_fit") else None

    def before_fit(cli) -> None:  # set up the data here so its time is measured on its own
        start = time.perf_counter()
        cli.datamodule.setup("fit")
        setup_seconds["s"] = time.perf_counter() - start
        cli.trainer.callbacks.append(timer)
        if original is not None:
            original(cli)

    SERCLI.before_fit = before_fit
    start = time.perf_counter()
    try:
        main(["fit", "--config", args.config, "--data", args.data, "--data.root", args.root,
              "--trainer.max_epochs", "1", "--test_after_fit", "false",
              "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir",
              log_dir])  # fmt: skip
    finally:
        if original is None:
            del SERCLI.before_fit
        else:
            SERCLI.before_fit = original
    return setup_seconds["s"], timer.seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--config", default="configs/cnn2d.yaml")
    parser.add_argument("--data", default="configs/data/ravdess.yaml")
    args = parser.parse_args()
    from ser.cli import SERCLI  # noqa: F401  (import cost outside the timings)
    from ser.data import RAVDESS
    from ser.io import cache_root

    rows = []
    with tempfile.TemporaryDirectory(prefix="ser-cache-bench-") as tmp:
        os.environ["SER_CACHE_DIR"] = tmp
        for label, cache in (("no cache (decode every file)", False), ("cache cold (decode + write)", True),
                             ("cache warm (memory-map)", True)):  # fmt: skip
            start = time.perf_counter()
            RAVDESS(root=args.root, cache=cache, verify=False).setup("fit")
            rows.append((f"RAVDESS setup, {label}", time.perf_counter() - start))
        size = sum(p.stat().st_size for p in (cache_root() / "audio").glob("*.cache"))
        rows.append(("cache file size (MB)", size / 1e6))
    with tempfile.TemporaryDirectory(prefix="ser-cache-bench-") as tmp:
        os.environ["SER_CACHE_DIR"] = tmp
        for label in ("before caching", "after caching"):
            setup, epoch, total = timed_fit(args, str(Path(tmp) / "logs"))
            rows += [(f"{Path(args.config).name} setup, {label}", setup),
                     (f"{Path(args.config).name} first epoch, {label}", epoch),
                     (f"{Path(args.config).name} 1-epoch fit command, {label}", total)]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  seconds")
    for name, value in rows:
        print(f"{name:<{width}}  {value:7.1f}")


if __name__ == "__main__":
    main()
