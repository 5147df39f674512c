"""Errors that ``ser`` raises for bad input: each names the file and the fix."""


class SERError(Exception):
    """Base class of the errors ``ser`` raises for bad input or configuration."""


class AudioError(SERError):
    """An audio file that cannot be used (unreadable, empty, non-finite...)."""


class CorpusNotFoundError(SERError, FileNotFoundError):
    """A corpus root that does not exist or holds no recognisable files."""


#: Errors of the libraries ``ser`` drives that are about the user's settings, by class name (so
#: that this module imports neither): Lightning's word on a Trainer or callback argument.
LIBRARY_USER_ERRORS = ("MisconfigurationException",)


def ser_error_in(error: BaseException) -> Exception | None:
    """The error about the user's input behind ``error``, if one is in its chain of causes and
    contexts: a :class:`SERError`, or one of :data:`LIBRARY_USER_ERRORS`.

    Libraries that build ``ser``'s classes (jsonargparse, for LightningCLI) catch the SERError a
    constructor raises and raise their own error about it; the user's message is the SERError's.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SERError) or type(error).__name__ in LIBRARY_USER_ERRORS:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def check_sizes(owner: str, **sizes: int | list[int]) -> None:
    """Refuse a size, or a list of sizes, below 1: ``check_sizes("CNN2D", channels=[0, 8])``.

    Raises:
        SERError: naming ``owner``, the setting and its value.
    """
    for name, value in sizes.items():
        values = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(v, int) and v >= 1 for v in values):
            what = "whole numbers" if values is value else "a whole number"
            raise SERError(f"{owner}: {name}={value} must be {what} >= 1")


def check_fraction(owner: str, name: str, value: float) -> None:
    """Refuse a dropout rate, smoothing or ratio outside ``[0, 1)`` (NaN included).

    Raises:
        SERError: naming ``owner``, the setting and its value.
    """
    if not 0 <= value < 1:
        raise SERError(f"{owner}: {name}={value} must be in [0, 1)")
