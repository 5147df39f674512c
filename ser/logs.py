"""The one logging setup of the ``ser`` command: the ``ser`` logger's format, and the library
notices a user cannot act on kept off the screen."""

from __future__ import annotations

import logging
import sys
import warnings

#: The one logger name of the package: every module logs to ``logging.getLogger("ser")``.
LOGGER = "ser"

#: Library messages that tell a ``ser`` user nothing they can act on.
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # lightning's pytree, torch >= 2.10
    r"The dirpath has changed from .*",  # a test or resumed run writes to its own new folder
    r".*does not have many workers.*",  # audio is decoded once, up front: workers do not help
)
QUIET_MESSAGES = ("litlogger",)  # Lightning's advertisement at every Trainer start


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in QUIET_MESSAGES)


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """``[ser] LEVEL message`` on stderr for the ``ser`` logger (once), library noise filtered."""
    log = logging.getLogger(LOGGER)
    ours = [h for h in log.handlers if h.get_name() == LOGGER]
    if ours:  # run again in one process (tests): today's stderr, not the first run's
        ours[0].stream = sys.stderr  # (setStream would flush the old one, maybe closed)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(LOGGER)
        handler.setFormatter(logging.Formatter("[ser] %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(level)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _Drop) for f in handler.filters):
                handler.addFilter(_Drop())
    return log
