"""``python -m ser`` / ``ser``: training commands go to LightningCLI; inference stays light."""

from __future__ import annotations

import importlib
import os
import sys

from ser.errors import ser_error_in
from ser.logs import setup_logging

#: Set (to anything but ``0`` or empty) to see the traceback behind an ``error:`` line.
DEBUG_ENV = "SER_DEBUG"

#: Every subcommand: the module that serves it (``ser.cli``: LightningCLI) and one line of help.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("ser.cli", "train a model, then test it and write the report (--config configs/cnn2d.yaml)"),
    "validate": ("ser.cli", "score a checkpoint on the validation split"),
    "test": ("ser.cli", "score a checkpoint on the test split: report, confusion matrix, predictions.csv"),
    "predict": ("ser.inference.predict", "the emotion of audio files, from a checkpoint or an export"),
    "explain": ("ser.inference.explain", "draw which feature bins and frames drove each file's answer (ser[explain])"),
    "export": ("ser.inference.export", "export a checkpoint's whole chain to TorchScript (and ONNX)"),
    "serve": ("ser.serve.server", "serve a model over HTTP: an API, a page and a live microphone (ser[serve])"),
    "cv": ("ser.cv", "cross-validate over speaker folds or leave-one-speaker-out: mean +- std, pooled matrix"),
    "baseline": ("ser.baseline", "an SVM on per-clip statistics of hand-crafted features"),
    "explore": ("ser.explore", "figures and a summary of what a corpus holds"),
    "download": ("ser.data.download", "fetch and unpack a corpus that has a public archive"),
}  # fmt: skip


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: ser COMMAND [options]    (or python -m ser COMMAND)",
        "",
        "Speech emotion recognition with PyTorch Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()),
        "",
        "`ser COMMAND --help` lists a command's options.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    try:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        setup_logging()
        if module.__name__ == "ser.cli":
            module.main(None if from_shell else argv)  # None: LightningCLI reads sys.argv itself
        else:
            module.main(argv[1:])
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
            raise
        cause = ser_error_in(err)  # also when a library raised its own error about it
        if cause is not None:  # bad input: one line naming the file and the fix
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(2) from None
        # Not the user's input: still one line, and how to get the traceback for a report.
        message = str(err).strip().splitlines()
        print(f"error: {type(err).__name__}: {message[0] if message else ''} (ser failed; run "
              f"again with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
