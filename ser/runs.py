"""One ``ser fit`` run in-process for the tools that run many (``ser cv``'s folds, the
cross-corpus matrix): its CLI and its test metrics."""

from __future__ import annotations

import json
from pathlib import Path


def fit_and_test(fit_args: list[str], out: str, name: str) -> tuple:
    """``ser fit`` in-process into ``OUT/NAME/version_N``; the CLI and its test metrics."""
    from ser.cli import main

    cli = main([
        "fit", *fit_args, "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", out, "--trainer.logger.init_args.name", name,
    ])  # fmt: skip
    metrics = json.loads((Path(cli.trainer.log_dir) / "test" / "metrics.json").read_text())
    return cli, metrics
