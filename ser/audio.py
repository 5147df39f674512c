"""Reading audio: any format soundfile reads, mixed down to mono and resampled."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from ser.errors import AudioError

log = logging.getLogger("ser")

#: A recording whose peak is below this (-80 dBFS) holds no usable speech.
SILENCE_PEAK = 1e-4


#: Seconds of audio :class:`AudioStream` decodes at a time: memory does not grow with duration.
BLOCK_SECONDS = 30.0


class AudioStream:
    """A file decoded block by block, mixed down to mono and resampled to ``sample_rate``.

    The blocks joined equal the whole file decoded, mixed down and resampled at once
    (:func:`resample_blocks`). Peak memory is a few blocks, whatever the duration.

    Args:
        path: any file soundfile (libsndfile) reads: WAV, FLAC, OGG, MP3, AIFF...
        sample_rate: rate of the blocks (``None``: the file's own).
        block_seconds: seconds decoded at a time (``None``: the whole file at once).

    Attributes:
        rate: the file's own sample rate.
        seconds: the file's duration as its header gives it.
        peak: largest absolute sample seen so far (of the mono mixdown, before resampling).
        silent: whether the samples seen so far never moved more than :data:`SILENCE_PEAK` from
            their midpoint (digital silence or a constant signal, as :func:`is_silent` says).
        n_samples: samples yielded so far (at ``sample_rate``).

    Raises:
        AudioError: (on opening or while reading) the file is missing, unreadable, empty, or
            holds NaN/inf samples.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int | None = None,
        block_seconds: float | None = BLOCK_SECONDS,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            info = sf.info(str(self.path))
            self.rate, self.seconds = int(info.samplerate), float(info.duration)
        except Exception as err:  # libsndfile reports every decoding failure as its own error
            raise AudioError(f"{self.path}: not a readable audio file ({err})") from None
        self.sample_rate = self.rate if sample_rate is None else int(sample_rate)
        self.block_frames = (
            None if block_seconds is None else max(1, round(block_seconds * self.rate))
        )
        self.peak, self.n_samples = 0.0, 0
        self.low, self.high = math.inf, -math.inf

    def _decoded(self) -> Iterator[torch.Tensor]:
        """The file's mono blocks ``(n,)`` at its own rate, checked."""
        n_frames = 0
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    data = f.read(
                        -1 if self.block_frames is None else self.block_frames,
                        dtype="float32",
                        always_2d=True,
                    )  # (n, n_channels)
                    if data.shape[0] == 0:
                        break
                    if not np.isfinite(data).all():
                        raise AudioError(f"{self.path}: holds NaN or infinite samples")
                    mono = data.mean(axis=1)  # (n,)
                    self.peak = max(self.peak, float(np.abs(mono).max()))
                    self.low = min(self.low, float(mono.min()))
                    self.high = max(self.high, float(mono.max()))
                    n_frames += len(mono)
                    yield torch.from_numpy(mono)
                    if self.block_frames is None:
                        break
        except AudioError:
            raise
        except Exception as err:
            raise AudioError(f"{self.path}: not a readable audio file ({err})") from None
        if n_frames == 0:
            raise AudioError(f"{self.path}: holds no samples (0 s of audio)")

    @property
    def silent(self) -> bool:
        return not (self.high - self.low) / 2 >= SILENCE_PEAK  # true before any sample too

    def __iter__(self) -> Iterator[torch.Tensor]:
        for block in resample_blocks(self._decoded(), self.rate, self.sample_rate):
            self.n_samples += len(block)
            yield block


def resample_blocks(
    blocks: Iterable[torch.Tensor], rate: int, sample_rate: int
) -> Iterator[torch.Tensor]:
    """Resample a recording given in consecutive blocks ``(n,)``; the output blocks joined equal
    :func:`resample` of the joined input (soxr's stream resampler keeps the filter's state between
    blocks, so training's whole clips and ``ser predict``'s blocks get the same samples)."""
    if rate == sample_rate:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    for block in blocks:
        yield torch.from_numpy(stream.resample_chunk(np.ascontiguousarray(block, np.float32)))
    yield torch.from_numpy(stream.resample_chunk(np.zeros(0, np.float32), last=True))


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode ``path`` to a mono float32 waveform at the file's own rate.

    Args:
        path: any file soundfile (libsndfile) reads: WAV, FLAC, OGG, MP3, AIFF...

    Returns:
        ``(waveform (n_samples,), sample_rate)``.

    Raises:
        AudioError: the file is missing, unreadable, empty, or holds NaN/inf samples.
    """
    stream = AudioStream(path, block_seconds=None)
    (wave,) = list(stream)
    return wave, stream.rate


#: python-soxr's quality setting for every resampling of audio read from files (decode cache,
#: ``ser predict``'s blocks, noise files): "MQ", soxr's 16-bit medium quality (passband to 91% of
#: the lower Nyquist rate, stopband below -96 dB). docs/features.md says how it was chosen.
RESAMPLE_QUALITY = "MQ"
#: What determines the resampler's output: part of the decoded-audio cache's key.
RESAMPLER = {"library": "soxr", "version": soxr.__version__, "quality": RESAMPLE_QUALITY}


def resample(wave: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """``wave`` (..., T) from ``rate`` to ``sample_rate`` Hz with soxr (:data:`RESAMPLE_QUALITY`).

    Its cost does not depend on how the two rates divide (24,414 -> 16,000 Hz costs about what
    48,000 -> 16,000 Hz does), and :func:`resample_blocks` gives the same samples block by block.
    """
    if rate == sample_rate:
        return wave.contiguous()
    flat = wave.detach().to("cpu", torch.float32).reshape(-1, wave.shape[-1])  # (C, T)
    channels = np.ascontiguousarray(flat.numpy().T)  # (T, C): soxr's layout
    out = soxr.resample(channels, rate, sample_rate, quality=RESAMPLE_QUALITY)  # (T', C)
    out = torch.from_numpy(np.ascontiguousarray(out.T))  # (C, T')
    return out.reshape(*wave.shape[:-1], out.shape[-1]).to(wave.device)


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode ``path`` to a mono float32 waveform ``(n_samples,)`` at ``sample_rate``.

    Raises:
        AudioError: see :func:`load_audio`.
    """
    wave, rate = load_audio(path)
    return resample(wave, rate, sample_rate)


def is_silent(wave: torch.Tensor) -> bool:
    """Whether ``wave`` never moves more than :data:`SILENCE_PEAK` from its mean: digital silence,
    a dead microphone, or a constant (DC) signal."""
    return wave.numel() == 0 or float((wave - wave.mean()).abs().max()) < SILENCE_PEAK


#: How the warnings name audio that :func:`is_silent` finds.
SILENT = "silent or constant (nothing above -80 dBFS)"


#: File endings of the formats soundfile (libsndfile) decodes: its format names, their usual
#: endings, and Ogg's codecs (``.opus``) where this libsndfile reads them.
AUDIO_EXTENSIONS = frozenset(
    {f".{fmt.lower()}" for fmt in sf.available_formats()}
    | {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".snd"}
    | {f".{codec.lower()}" for codec in sf.available_subtypes("OGG") if codec != "VORBIS"}
)


def is_audio_file(path: Path) -> bool:
    """Whether ``path`` is a file with an audio ending that soundfile reads."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


#: Endings of audio that libsndfile does not decode: a scan that meets them warns.
UNREADABLE_AUDIO = frozenset(
    {".m4a", ".aac", ".wma", ".mp4", ".webm", ".amr", ".ape", ".wv", ".3gp", ".mka", ".opus"}
    - AUDIO_EXTENSIONS
)


def audio_files(paths: Iterable[Path], where: Path) -> list[Path]:
    """The audio files among ``paths`` (a folder scan), in order. No file drops out without a
    word: audio soundfile cannot decode (``.m4a``...) is named in a warning, other files (notes,
    metadata; hidden ones aside) in an info line.

    Args:
        paths: what the scan found (files and folders).
        where: the folder scanned, for the messages.
    """
    found, audio, others = [], [], []
    for path in paths:
        if is_audio_file(path):
            found.append(path)
        elif path.is_file() and not path.name.startswith("."):
            (audio if path.suffix.lower() in UNREADABLE_AUDIO else others).append(path)
    for level, skipped, what in (
        (
            logging.WARNING,
            audio,
            "audio files soundfile cannot decode; convert them to WAV or FLAC",
        ),
        (logging.INFO, others, "files that are not audio"),
    ):
        if skipped:
            names = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            log.log(level, "%s: ignored %d %s: %s", where, len(skipped), what, names)
    return found


#: Recordings shorter than this are zero-padded up to it: the nets pool time several times.
MIN_SECONDS = 0.25
#: How a whole recording is cut by default: windows of this length (s), stepping by the hop (s).
WINDOW_SECONDS, HOP_SECONDS = 4.0, 2.0


def window_bounds(n_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of the windows covering ``n_samples``.

    A recording no longer than ``window`` is one window; otherwise windows step by ``hop`` and the
    last one is aligned to the end, so every window is full and the tail is not dropped.
    """
    if n_samples <= window:
        return [(0, n_samples)]
    n_windows = math.ceil((n_samples - window) / hop) + 1
    starts = [min(i * hop, n_samples - window) for i in range(n_windows)]
    return [(s, s + window) for s in dict.fromkeys(starts)]


class Windower:
    """Cuts a recording given in consecutive pieces into the windows of :func:`window_bounds`,
    each as soon as its samples have arrived: it holds at most a window and a piece.

    Args:
        sample_rate: rate of the pieces.
        window_seconds: window length (s).
        hop_seconds: step between windows (s).
        offset: sample index of the recording's first sample (e.g. a speech segment's start);
            the bounds returned count from there.
    """

    def __init__(
        self, sample_rate: int, window_seconds: float, hop_seconds: float, offset: int = 0
    ) -> None:
        self.window, self.hop = (
            round(window_seconds * sample_rate),
            round(hop_seconds * sample_rate),
        )
        self.min_samples = round(MIN_SECONDS * sample_rate)
        self.offset = offset
        self.buffer, self.buffer_start = torch.empty(0), 0
        self.next_start, self.last_start = 0, None  # the next regular window; the last one cut

    def _cut(self, start: int, end: int) -> tuple[int, int, torch.Tensor]:
        clip = self.buffer[start - self.buffer_start : end - self.buffer_start].clone()
        self.last_start = start
        return self.offset + start, self.offset + end, clip

    def push(self, piece: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        """Add the next ``(n,)`` samples; return the windows ``(start, end, clip)`` now complete."""
        self.buffer = torch.cat([self.buffer, piece])
        n_samples = self.buffer_start + len(self.buffer)
        out = []
        while self.next_start + self.window <= n_samples:
            out.append(self._cut(self.next_start, self.next_start + self.window))
            self.next_start += self.hop
        keep = max(0, min(self.next_start, n_samples - self.window))  # the last window's samples
        self.buffer, self.buffer_start = self.buffer[keep - self.buffer_start :], keep
        return out

    def finish(self) -> list[tuple[int, int, torch.Tensor]]:
        """The recording has ended: the last window, aligned to its end (or the whole recording,
        padded to :data:`MIN_SECONDS`, when it is no longer than a window)."""
        n_samples = self.buffer_start + len(self.buffer)
        if n_samples > self.window:
            start = n_samples - self.window
            return [] if self.last_start == start else [self._cut(start, n_samples)]
        if self.last_start is not None:  # exactly one window long: already cut
            return []
        if n_samples < self.min_samples:
            self.buffer = torch.nn.functional.pad(self.buffer, (0, self.min_samples - n_samples))
        return [self._cut(0, len(self.buffer))]


def recording_windows(
    wave: torch.Tensor, sample_rate: int, window_seconds: float, hop_seconds: float
) -> tuple[list[tuple[int, int]], list[torch.Tensor]]:
    """How a whole recording is scored (``ser predict``, ``ser test --score recordings``): padded
    to :data:`MIN_SECONDS` if shorter, then cut into windows of equal length (:class:`Windower`).

    Returns:
        The windows' sample bounds and the ``(window,)`` waveforms.
    """
    windower = Windower(sample_rate, window_seconds, hop_seconds)
    windows = windower.push(wave) + windower.finish()
    return [(s, e) for s, e, _ in windows], [clip for *_, clip in windows]
