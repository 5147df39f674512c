"""Errors that ``ser`` raises for bad input: each names the file and the fix."""


class SERError(Exception):
    """Base class of the errors ``ser`` raises for bad input or configuration."""


class AudioError(SERError):
    """An audio file that cannot be used (unreadable, empty, non-finite...)."""


class CorpusNotFoundError(SERError, FileNotFoundError):
    """A corpus root that does not exist or holds no recognisable files."""
