"""A frozen base-size encoder with and without its feature cache: seconds per training epoch
(validation included), cache size on disk, peak RSS. Prints a table.

    python benchmarks/encoder_cache.py --root PATH/TO/RAVDESS [--actors 01 02 15 19] [--epochs 3]

The real WAVLM_BASE_PLUS architecture with random weights (the cost is the real one; the
accuracy is not), written where torch.hub looks in a temporary TORCH_HOME. ``--actors`` picks a
subset of RAVDESS (the first two train, then one validation and one test actor) to keep it short
on a CPU. Each run is its own process, so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's ser


def one_run(args: argparse.Namespace) -> None:
    """In the child: ``ser fit`` for ``--epochs`` epochs; print epoch seconds and peak RSS."""
    import lightning as L

    from ser.cli import main

    class EpochTimer(L.Callback):
        seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    from ser.cli import SERCLI

    def before_fit(cli) -> None:
        cli.trainer.callbacks.append(timer)

    timer = EpochTimer()
    SERCLI.before_fit = before_fit
    val, test = args.actors[-2], args.actors[-1]
    main(["fit", "--config", str(REPO / "configs" / "wavlm_base_plus.yaml"),
          "--data", str(REPO / "configs" / "data" / "ravdess.yaml"), "--data.root", args.root,
          "--data.split.test_speakers", f'["{test}"]', "--data.split.val_speakers", f'["{val}"]',
          "--data.cache", str(args.cache).lower(), "--trainer.max_epochs", str(args.epochs),
          "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.logger.init_args.save_dir", args.logs])  # fmt: skip
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"epochs": timer.seconds, "rss_mb": rss_mb}))


def run(args: argparse.Namespace, corpus: Path, home: Path, cache: bool) -> dict:
    env = {**os.environ, "TORCH_HOME": str(home), "SER_CACHE_DIR": str(home / "ser-cache")}
    command = [sys.executable, __file__, "--child", "--root", str(corpus), "--actors", *args.actors,
               "--epochs", str(args.epochs if cache else 1), "--cache", str(cache),
               "--logs", str(home / "logs")]  # fmt: skip
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def du_mb(folder: Path) -> float:
    """Megabytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="RAVDESS folder (Actor_01..24)")
    parser.add_argument("--actors", nargs="+", default=["01", "02", "15", "19"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="True", help=argparse.SUPPRESS)
    parser.add_argument("--logs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.cache = args.cache == "True"
        return one_run(args)

    import torch
    import torchaudio
    from torchaudio.pipelines._wav2vec2.utils import _get_model

    with tempfile.TemporaryDirectory() as tmp:
        home, corpus = Path(tmp) / "torch", Path(tmp) / "ravdess"
        corpus.mkdir()
        for actor in args.actors:  # the subset, as links
            (corpus / f"Actor_{actor}").symlink_to(Path(args.root).resolve() / f"Actor_{actor}")
        bundle = torchaudio.pipelines.WAVLM_BASE_PLUS
        weights = home / "hub" / "checkpoints" / Path(bundle._path).name
        weights.parent.mkdir(parents=True)
        torch.save(_get_model(bundle._model_type, bundle._params).state_dict(), weights)
        uncached = run(args, corpus, home, cache=False)
        cached = run(args, corpus, home, cache=True)
        size = du_mb(home / "ser-cache" / "features")
        n_entries = len(list((home / "ser-cache" / "features").rglob("*.pt")))
    n_clips = 60 * len(args.actors)
    first, later = cached["epochs"][0], min(cached["epochs"][1:])
    print(f"WAVLM_BASE_PLUS (random weights), RAVDESS actors {' '.join(args.actors)} "
          f"({n_clips} clips; train {' '.join(args.actors[:-2])}, val {args.actors[-2]})")  # fmt: skip
    print(f"{'run':<34}{'epoch s':>9}{'peak RSS MB':>13}")
    print(f"{'no cache (--data.cache false)':<34}{uncached['epochs'][0]:>9.1f}"
          f"{uncached['rss_mb']:>13.0f}")  # fmt: skip
    print(f"{'cache, first epoch (fills it)':<34}{first:>9.1f}{cached['rss_mb']:>13.0f}")
    print(f"{'cache, later epochs (best)':<34}{later:>9.1f}")
    print(f"cache on disk: {size:.0f} MB, {n_entries} clips ({size / n_entries:.2f} MB per clip, "
          "float16)")  # fmt: skip
    print(f"cached epoch / uncached epoch: {later / uncached['epochs'][0]:.3f}")


if __name__ == "__main__":
    main()
