"""Training-step time of a config's net in float32 and in bfloat16 autocast, on this machine's CPU.

A step is what ``ser fit`` runs per batch: the feature pipeline on the batch (always float32,
outside autocast), the net's forward and backward passes and the optimiser step. Batches are real
training batches of the corpus; the first steps warm up and are not timed; the table gives the
median of the timed steps and the ratio of each precision to float32, measured in one run::

    python benchmarks/precision.py --root PATH/TO/RAVDESS [--config configs/cnn2d.yaml] [--steps 20]

``bf16-mixed`` pays off on a CPU with native bfloat16 matrix instructions (AVX512_BF16 or AMX);
elsewhere it can be slower than float32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ser.cli import build_cli
from ser.data.base import SERDataModule
from ser.tasks import EmotionClassifier

REPO = Path(__file__).resolve().parents[1]


def build(config: Path, data_config: Path, root: str) -> tuple[SERDataModule, EmotionClassifier]:
    """The DataModule and task of ``ser fit --config CONFIG --data DATA``, linked as the CLI
    links them (nothing trained)."""
    cli = build_cli(
        ["--config", str(config), "--data", str(data_config), "--data.root", root], run=False
    )
    cli.datamodule.setup("fit")
    return cli.datamodule, cli.model


def step_times(
    data: SERDataModule, model: EmotionClassifier, precision: str, steps: int, warmup: int
) -> list[float]:
    """Seconds of each timed training step at ``precision`` (``32-true`` or ``bf16-mixed``)."""
    torch.manual_seed(0)
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    loader = iter(data.train_dataloader())
    data.pipeline.train()
    model.train()
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    )
    times = []
    for i in range(warmup + steps):
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(data.train_dataloader())
            batch = next(loader)
        start = time.perf_counter()
        batch = data.pipeline.process(batch, data.n_classes)
        with autocast:
            logits = model(batch["features"], batch["feature_lengths"])
            loss = model.loss(logits.float(), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the corpus folder (--data.root)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cnn2d.yaml")
    parser.add_argument("--data", type=Path, default=REPO / "configs" / "data" / "ravdess.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    args = parser.parse_args()
    data, model = build(args.config, args.data, args.root)
    rows = {}
    for precision in ("32-true", "bf16-mixed", "32-true"):  # float32 again: the machine drifts
        rows.setdefault(precision, []).extend(
            step_times(data, model, precision, args.steps, args.warmup)
        )
    base = statistics.median(rows["32-true"])
    print(f"{args.config.name} on {args.data.name}: batch {data.batch_size}, "
          f"{torch.get_num_threads()} torch threads, median of {args.steps}+ steps")  # fmt: skip
    print("| precision | median step (s) | ratio to 32-true |")
    print("| --- | --- | --- |")
    for precision, times in rows.items():
        median = statistics.median(times)
        print(f"| {precision} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
