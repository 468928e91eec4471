"""Real audio for the emulator: a music-like test signal and a simple DSP stem split.

Everything streams in blocks of about one second, so a 1 GB WAV never sits in memory.

The split: for N stems, N-1 crossover frequencies log-spaced between 200 Hz and 5 kHz.
Each crossover is a causal moving-average low-pass (length ``0.443 * rate / f``, computed
with a running cumulative sum, state carried across blocks); stem 0 is the lowest band,
stem k the difference of neighbouring low-passes, the last stem the input minus the highest
low-pass. The stems therefore sum back exactly to the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

Array = npt.NDArray[np.float64]

# output_format code -> (libsndfile format, subtype); 3 (m4a) cannot be encoded: mp3 bytes.
OUTPUT_ENCODINGS: dict[int, tuple[str, str]] = {
    0: ("MP3", "MPEG_LAYER_III"),
    1: ("WAV", "PCM_16"),
    2: ("FLAC", "PCM_16"),
    3: ("MP3", "MPEG_LAYER_III"),
    4: ("WAV", "FLOAT"),
    5: ("FLAC", "PCM_24"),
}
_EXT_FORMATS = {
    "wav": "WAV",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "OGG",
    "aiff": "AIFF",
    "aif": "AIFF",
}
_LOSSY_FORMATS = {"MP3", "OGG"}


@dataclass(frozen=True)
class AudioInfo:
    """What libsndfile says about an audio file."""

    duration_s: float
    frames: int
    sample_rate: int
    channels: int
    format: str


def probe(path: Path) -> AudioInfo | None:
    """Decode the header of ``path``; None when libsndfile cannot read it as audio."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return AudioInfo(
        duration_s=float(info.frames) / info.samplerate,
        frames=int(info.frames),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        format=str(info.format),
    )


def _signal_block(
    start: int, frames: int, sample_rate: int, channels: int, rng: np.random.Generator
) -> Array:
    t = (start + np.arange(frames, dtype=np.float64)) / sample_rate
    tones = (
        0.15 * np.sin(2 * np.pi * 110.0 * t)
        + 0.10 * np.sin(2 * np.pi * 440.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
        + 0.08 * np.sin(2 * np.pi * 1760.0 * t)
        + 0.05 * np.sin(2 * np.pi * 5000.0 * t)
    )
    burst = ((t % 0.5) < 0.1).astype(np.float64)  # a 100 ms noise hit every half second
    noise = 0.12 * burst * rng.standard_normal(frames)
    mono = tones + noise
    columns = [mono * (1.0 - 0.2 * (c % 2)) for c in range(channels)]
    return np.stack(columns, axis=1)


def _file_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt.upper()
    ext = path.suffix.lower().lstrip(".")
    if ext not in _EXT_FORMATS:
        raise ValueError(f"cannot tell the audio format of {path.name}; pass fmt=")
    return _EXT_FORMATS[ext]


def write_test_audio(
    path: Path,
    seconds: float,
    *,
    sample_rate: int = 44100,
    channels: int = 2,
    subtype: str = "PCM_16",
    fmt: str | None = None,
) -> Path:
    """Write a music-like test signal (tones + noise bursts) of ``seconds`` to ``path``.

    The format comes from the extension unless ``fmt`` is given; for mp3/ogg the default
    ``PCM_16`` subtype is replaced by the format's own. Streams in one-second blocks.
    """
    path = Path(path)
    file_format = _file_format(path, fmt)
    if file_format in _LOSSY_FORMATS and subtype == "PCM_16":
        subtype = sf.default_subtype(file_format)
    total = int(round(seconds * sample_rate))
    rng = np.random.default_rng(1234)
    with sf.SoundFile(
        str(path),
        "w",
        samplerate=sample_rate,
        channels=channels,
        subtype=subtype,
        format=file_format,
    ) as out:
        for start in range(0, total, sample_rate):
            frames = min(sample_rate, total - start)
            out.write(_signal_block(start, frames, sample_rate, channels, rng))
    return path


class _MovingAverage:
    """Causal moving average over ``length`` samples, state carried across blocks."""

    def __init__(self, length: int, channels: int) -> None:
        self.length = length
        self.channels = channels
        self.buffer: Array = np.zeros((length, channels))

    def __call__(self, block: Array) -> Array:
        n, length = len(block), self.length
        if len(self.buffer) != length + n:  # reuse the buffer: fresh allocations are slow
            grown = np.zeros((length + n, self.channels))
            grown[:length] = self.buffer[-length:] if len(self.buffer) > length else self.buffer
            self.buffer = grown
        buffer = self.buffer
        buffer[length:] = block
        sums = np.cumsum(buffer, axis=0)
        out: Array = (sums[length:] - sums[:-length]) / length
        buffer[:length] = buffer[-length:].copy()
        return out


def crossovers_hz(stems: int) -> list[float]:
    """The N-1 crossover frequencies used for an N-stem split."""
    if stems <= 1:
        return []
    if stems == 2:
        return [1000.0]
    return [float(f) for f in np.geomspace(200.0, 5000.0, stems - 1)]


class BandSplitter:
    """Split blocks of audio into ``stems`` complementary frequency bands."""

    def __init__(self, stems: int, sample_rate: int, channels: int) -> None:
        lengths = [max(1, round(0.443 * sample_rate / f)) for f in crossovers_hz(stems)]
        self.stems = stems
        self.filters = [_MovingAverage(n, channels) for n in lengths]

    def split(self, block: Array) -> list[Array]:
        """The stems of one block (lowest band first); they sum to ``block``."""
        if self.stems <= 1:
            return [block]
        lows = [f(block) for f in self.filters]
        bands = [lows[0]]
        bands += [hi - lo for lo, hi in zip(lows, lows[1:], strict=False)]
        bands.append(block - lows[-1])
        return bands


class SplitCancelled(Exception):
    """The split was stopped by its ``should_stop`` callable."""


def split_to_stems(
    source: Path,
    destinations: Sequence[Path],
    *,
    output_format: int,
    should_stop: Callable[[], bool] = lambda: False,
    block_frames: int = 44100,
) -> None:
    """Decode ``source`` block by block and write one band per destination.

    Each destination gets the source's sample rate, channels and frame count, encoded as
    ``OUTPUT_ENCODINGS[output_format]``. Raises :class:`SplitCancelled` when stopped.
    """
    file_format, subtype = OUTPUT_ENCODINGS[output_format]
    clip = subtype != "FLOAT"
    with sf.SoundFile(str(source)) as src:
        splitter = BandSplitter(len(destinations), src.samplerate, src.channels)
        outs = [
            sf.SoundFile(
                str(d),
                "w",
                samplerate=src.samplerate,
                channels=src.channels,
                format=file_format,
                subtype=subtype,
            )
            for d in destinations
        ]
        try:
            _pump(src, outs, splitter, clip, block_frames, should_stop)
        finally:
            for out in outs:
                out.close()


def _pump(
    src: sf.SoundFile,
    outs: list[sf.SoundFile],
    splitter: BandSplitter,
    clip: bool,
    block_frames: int,
    should_stop: Callable[[], bool],
) -> None:
    while True:
        if should_stop():
            raise SplitCancelled()
        block = src.read(frames=block_frames, dtype="float64", always_2d=True)
        if len(block) == 0:
            return
        for out, band in zip(outs, splitter.split(block), strict=True):
            out.write(np.clip(band, -1.0, 1.0) if clip else band)
