"""``python -m ser`` / ``ser``: training commands go to LightningCLI; inference stays light."""

from __future__ import annotations

import sys

from ser.errors import SERError

#: Subcommands served without importing lightning (fast start, no training stack).
LIGHT_COMMANDS: dict[str, str] = {"predict": "ser.inference.predict", "export": "ser.inference.export"}
#: Subcommands with their own parser (not LightningCLI's): corpus download and exploration, the
#: SVM baseline.
TOOL_COMMANDS: dict[str, str] = {
    "download": "ser.data.download", "explore": "ser.explore", "baseline": "ser.baseline",
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {**LIGHT_COMMANDS, **TOOL_COMMANDS}
    try:
        if argv and argv[0] in commands:
            import importlib

            importlib.import_module(commands[argv[0]]).main(argv[1:])
            return
        from ser.cli import main as cli_main

        cli_main(argv)
    except SERError as err:  # bad input: one line naming the file and the fix, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
