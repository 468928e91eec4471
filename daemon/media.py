"""Is this file really audio? How long is it, who is it by? Answered before any upload.

:func:`probe` sniffs the first bytes (RIFF/WAVE, fLaC, ID3 or an MPEG frame, OggS,
FORM/AIFF, ``ftyp``...) so that a text file named ``.wav`` fails with a clear reason instead
of costing a submit, then lets mutagen read the duration and the tags (ID3, Vorbis comments,
MP4, APE, ASF; RIFF ``LIST/INFO`` chunks of WAV files are read here). A file shorter than
its container says (:mod:`daemon.completeness`: WAV, AIFF, FLAC, MP3, MP4, Ogg) answers
``cut_off=True``, which the engine reads as "maybe still being copied". It never raises for
bad input: it answers ``ok=False`` with a reason a user can act on.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mutagen
import structlog

from daemon.completeness import cut_off_reason

log = structlog.get_logger(__name__)

_SNIFF_BYTES = 64

# What the header of a file with this extension should look like, for the reason text.
_EXPECTED = {
    ".wav": "a RIFF/WAVE header",
    ".wave": "a RIFF/WAVE header",
    ".flac": "a fLaC header",
    ".mp3": "an ID3 tag or MPEG audio frame",
    ".ogg": "an OggS header",
    ".opus": "an OggS header",
    ".aif": "a FORM/AIFF header",
    ".aiff": "a FORM/AIFF header",
    ".m4a": "an MP4 'ftyp' header",
    ".aac": "an ADTS frame",
}

# Well-known non-audio files, for a more helpful reason.
_NOT_AUDIO_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "a program (ELF)"),
    (b"Rar!", "a RAR archive"),
)


@dataclass(frozen=True)
class AudioProbe:
    """What :func:`probe` found. ``ok=False`` always comes with a ``reason``."""

    ok: bool
    reason: str | None = None
    format: str | None = None  # wav, flac, mp3, ogg, aiff, m4a, ...
    duration_s: float | None = None
    artist: str | None = None
    title: str | None = None
    cut_off: bool = False
    """The header promises more audio than the file holds: damaged, or still being copied."""


def sniff_format(head: bytes) -> str | None:
    """Name the audio container ``head`` (the first bytes of a file) starts with, or None."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav" if head[:4] == b"RIFF" else "rf64"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "m4a"
    simple = {b"fLaC": "flac", b"OggS": "ogg", b"wvpk": "wavpack", b"MAC ": "ape"}
    if head[:4] in simple:
        return simple[head[:4]]
    if head[:3] == b"ID3":
        return "mp3"  # an ID3 tag may also front FLAC/AAC; mutagen tells them apart
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "wma"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "aac" if (head[1] & 0x06) == 0 else "mp3"  # layer bits 00 = ADTS (AAC)
    return None


def _describe_non_audio(head: bytes) -> str:
    for magic, what in _NOT_AUDIO_MAGIC:
        if head.startswith(magic):
            return what
    sample = head.lstrip(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    if sample and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in sample):
        try:  # incremental: the sample may end in the middle of a character
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        except UnicodeDecodeError:
            pass
        else:
            return "text"
    return "an unrecognised header"


def _not_audio_reason(path: Path, head: bytes) -> str:
    what = _describe_non_audio(head)
    expected = _EXPECTED.get(path.suffix.lower(), "a known audio header")
    return f"not audio: the file starts with {what}, not {expected}"


def probe(path: Path) -> AudioProbe:
    """Check that ``path`` is readable audio; return its format, duration and tags.

    Reasons (``ok=False``): ``"empty file (0 bytes)"``, ``"not audio: the file starts with
    text, not a RIFF/WAVE header"``, ``"damaged wav: ..."``, ``"no audio data (duration
    0 s)"``, ``"cannot read the file: ..."``.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        return AudioProbe(ok=False, reason=f"cannot read the file: {exc.strerror or exc}")
    if not head:
        return AudioProbe(ok=False, reason="empty file (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None:
        return AudioProbe(ok=False, reason=_not_audio_reason(path, head))
    return _read_with_mutagen(path, fmt)


def _read_with_mutagen(path: Path, fmt: str) -> AudioProbe:
    try:
        audio: Any = mutagen.File(path)
    except Exception as exc:  # mutagen raises many types on damaged input; none may escape
        log.debug("mutagen failed", file=str(path), error=repr(exc))
        return _unreadable(path, fmt, f"damaged {fmt}: {_short(exc)}")
    if audio is None:
        if fmt == "rf64":  # valid but beyond mutagen: let MVSEP decide
            return AudioProbe(ok=True, format=fmt)
        cut = cut_off_reason(path, fmt)
        if cut is not None:
            return AudioProbe(ok=False, format=fmt, reason=cut, cut_off=True)
        return AudioProbe(
            ok=False, format=fmt, reason=f"damaged {fmt}: the header is not followed by audio"
        )
    length = getattr(audio.info, "length", None)
    duration = float(length) if isinstance(length, int | float) else None
    if duration is not None and duration <= 0:
        return AudioProbe(ok=False, format=fmt, reason="no audio data (duration 0 s)")
    truncated = cut_off_reason(path, fmt, audio.info)
    if truncated is not None:
        return AudioProbe(ok=False, format=fmt, duration_s=duration, reason=truncated, cut_off=True)
    artist, title = _tags(audio.tags)
    if fmt == "wav" and (artist is None or title is None):
        info = _riff_info(path)
        artist, title = artist or info.get("IART"), title or info.get("INAM")
    return AudioProbe(ok=True, format=fmt, duration_s=duration, artist=artist, title=title)


def _unreadable(path: Path, fmt: str, reason: str) -> AudioProbe:
    """mutagen could not read it: a copy cut before the end (an MP4 without its ``moov``)
    is cut off, and waits; anything else is damaged."""
    cut = cut_off_reason(path, fmt)
    if cut is not None:
        return AudioProbe(ok=False, format=fmt, reason=cut, cut_off=True)
    return AudioProbe(ok=False, format=fmt, reason=reason)


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_ARTIST_KEYS = ("TPE1", "artist", "ARTIST", "\xa9ART", "Artist", "Author", "TPE2")
_TITLE_KEYS = ("TIT2", "title", "TITLE", "\xa9nam", "Title")


def _tags(tags: Any) -> tuple[str | None, str | None]:
    if tags is None:
        return None, None
    return _first_text(tags, _ARTIST_KEYS), _first_text(tags, _TITLE_KEYS)


def _first_text(tags: Any, keys: Iterable[str]) -> str | None:
    for key in keys:
        try:
            value = tags[key]
        except (KeyError, ValueError, TypeError):
            continue
        text = _as_text(value)
        if text:
            return text
    return None


def _as_text(value: Any) -> str | None:
    """ID3 frames have ``.text``; Vorbis/MP4 values are lists; APE/ASF values print as text."""
    if hasattr(value, "text"):
        value = value.text
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _riff_info(path: Path, *, max_chunks: int = 64) -> dict[str, str]:
    """Read the ``LIST/INFO`` chunk of a RIFF/WAVE file (``IART``, ``INAM``...); {} on trouble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(12)
            for _ in range(max_chunks):
                header = fh.read(8)
                if len(header) < 8:
                    break
                chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"LIST" and fh.read(4) == b"INFO":
                    return _parse_info(fh.read(min(size - 4, 1 << 16)))
                fh.seek(fh.tell() + size + (size & 1) - (4 if chunk_id == b"LIST" else 0))
    except (OSError, struct.error, ValueError):
        pass
    return {}


def _parse_info(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    pos = 0
    while pos + 8 <= len(data):
        key, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        raw = data[pos + 8 : pos + 8 + size].split(b"\x00", 1)[0]
        text = raw.decode("utf-8", errors="replace").strip()
        if text:
            found[key.decode("latin-1")] = text
        pos += 8 + size + (size & 1)
    return found
