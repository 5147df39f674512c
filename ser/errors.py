"""Errors that ``ser`` raises for bad input: each names the file and the fix."""


class SERError(Exception):
    """Base class of the errors ``ser`` raises for bad input or configuration."""


class AudioError(SERError):
    """An audio file that cannot be used (unreadable, empty, non-finite...)."""


class CorpusNotFoundError(SERError, FileNotFoundError):
    """A corpus root that does not exist or holds no recognisable files."""


def ser_error_in(error: BaseException) -> SERError | None:
    """The :class:`SERError` behind ``error``, if one is in its chain of causes and contexts.

    Libraries that build ``ser``'s classes (jsonargparse, for LightningCLI) catch the SERError a
    constructor raises and raise their own error about it; the user's message is the SERError's.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, SERError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
