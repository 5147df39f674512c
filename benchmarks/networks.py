"""Size and inference speed of every net of the zoo, untrained, each with its config's front-end.

For each config of :data:`benchmarks.model_zoo.MODELS` the net is built with the config's
``init_args`` and the front-end the config names (eval mode, no noise reduction, no
normalisation); a batch of 4-s windows of noise at 16 kHz goes through the front-end and the net
under ``torch.inference_mode``. After warm-up runs, the median of the timed runs divided by the
batch size is the time per window. Prints one Markdown table::

    python -m benchmarks.networks [--threads 1] [--runs 20] [--models cnn2d ecapa]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from benchmarks.model_zoo import MODELS
from ser.spec import build_net
from ser.transforms import FeaturePipeline

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
SECONDS = 4.0
#: RAVDESS's emotions.
N_CLASSES = 8


def build(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The front-end pipeline and the net of ``configs/NAME.yaml``, in eval mode."""
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    net_spec = config["model"]["init_args"]["net"]
    net_spec = {"class_path": net_spec["class_path"], "init_args": net_spec.get("init_args", {})}
    frontend = {"init_args": {}} | config["data"]["init_args"]["frontend"]
    pipeline = FeaturePipeline.from_spec({"frontend": frontend, "denoise": None}, SAMPLE_RATE)
    net = build_net(net_spec, N_CLASSES, pipeline.n_features, SAMPLE_RATE)
    return pipeline.eval(), net.eval()


def ms_per_window(
    pipeline: torch.nn.Module, net: torch.nn.Module, batch_size: int, runs: int, warmup: int = 3
) -> float:
    """Median milliseconds per 4-s window of front-end + net on batches of ``batch_size``."""
    samples = round(SECONDS * SAMPLE_RATE)
    waveform = 0.1 * torch.randn(batch_size, samples, generator=torch.Generator().manual_seed(0))
    lengths = torch.full((batch_size,), samples)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            net(*pipeline(waveform, lengths))
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="configs/NAME.yaml")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs at batch 1")
    parser.add_argument("--batch-size", type=int, default=16, help="the larger batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}; median of {args.runs} "
        f"runs at batch 1 and {max(3, args.runs // 4)} at batch {args.batch_size}, after 3 warm-ups\n"
    )
    print(f"| net | config | params | ms per 4-s window, batch 1 | batch {args.batch_size} |")
    print("|---|---|---:|---:|---:|")
    for name in args.models:
        pipeline, net = build(name)
        params = sum(p.numel() for p in net.parameters())
        one = ms_per_window(pipeline, net, 1, args.runs)
        many = ms_per_window(pipeline, net, args.batch_size, max(3, args.runs // 4))
        print(
            f"| {type(net).__name__} | `configs/{name}.yaml` | {params / 1e3:,.0f}k "
            f"| {one:.1f} | {many:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
