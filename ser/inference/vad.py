"""Speech segments of a recording, found by a voice-activity detector (silero-vad, MIT, which
ships its model inside the package: nothing is downloaded).

The recording is read in blocks at 16 kHz (:class:`ser.audio.AudioStream`), so memory does not grow
with its duration; a segment cut by a block boundary is joined again.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path

import torch

from ser.audio import AudioStream
from ser.errors import SERError

VAD_HINT = "--segments vad needs the silero-vad package: pip install silero-vad (or pip install 'ser[vad]')"
#: The detector's rate (it takes 8 or 16 kHz).
VAD_RATE = 16000
#: Seconds of audio the detector sees at a time.
VAD_BLOCK_SECONDS = 300.0
#: Segments this close (s) on both sides of a block boundary are one segment cut by it.
JOIN_SECONDS = 0.1


@functools.cache
def load_vad() -> torch.nn.Module:
    """silero-vad's model (TorchScript, shipped in the package); one clear error when absent."""
    if importlib.util.find_spec("silero_vad") is None:
        raise SERError(VAD_HINT)
    from silero_vad import load_silero_vad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still supported
        return load_silero_vad()


def speech_segments(path: str | Path, threshold: float = 0.5) -> list[tuple[float, float]]:
    """``(start, end)`` in seconds of each stretch of speech in ``path``, in order.

    Args:
        path: an audio file (any format, rate and channel count soundfile reads).
        threshold: speech probability above which a 32 ms frame is speech (silero's default).

    Raises:
        AudioError: the file cannot be read (see :class:`ser.audio.AudioStream`).
    """
    from silero_vad import get_speech_timestamps

    model = load_vad()
    segments: list[tuple[float, float]] = []
    offset = 0  # samples before the current block
    for block in AudioStream(path, VAD_RATE, block_seconds=VAD_BLOCK_SECONDS):
        boundary = offset / VAD_RATE
        for stamp in get_speech_timestamps(
            block, model, threshold=threshold, sampling_rate=VAD_RATE
        ):
            start, end = (offset + stamp["start"]) / VAD_RATE, (offset + stamp["end"]) / VAD_RATE
            joined = (
                segments
                and segments[-1][1] >= boundary - JOIN_SECONDS
                and start <= boundary + JOIN_SECONDS
            )
            if joined:
                segments[-1] = (segments[-1][0], end)
            else:
                segments.append((start, end))
        offset += len(block)
    return segments
