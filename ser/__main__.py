"""``python -m ser`` / ``ser``: training commands go to LightningCLI; inference stays light."""

from __future__ import annotations

import sys

#: Subcommands served without importing lightning (fast start, no training stack).
LIGHT_COMMANDS: dict[str, str] = {"predict": "ser.predict", "export": "ser.export"}
#: Subcommands with their own parser (not LightningCLI's).
OWN_PARSER_COMMANDS: dict[str, str] = {**LIGHT_COMMANDS, "baseline": "ser.baseline"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in OWN_PARSER_COMMANDS:
        import importlib

        importlib.import_module(OWN_PARSER_COMMANDS[argv[0]]).main(argv[1:])
        return
    from ser.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
