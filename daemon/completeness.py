"""Is the whole file there? What a container promises against what the file holds.

A copy that stalls (a slow SMB or Wi-Fi link, a laptop put to sleep) leaves a file that
looks finished to the watcher. Each accepted container says, somewhere, how much there
should be; :func:`cut_off_reason` compares that with the bytes on disk and answers a reason
("the header says 4.0 s, the file holds 1.2 s") or None. It reads a few small pieces of the
file (the head and the last 64 KiB), never the whole of it, and never raises for bad input.

* WAV/AIFF: the header's data size (duration x bitrate) against the file size.
* FLAC: STREAMINFO's total samples against where the last frame in the tail ends (a frame
  header is checked by its CRC-8, so audio bytes that look like a sync code do not count).
* MP3: the Xing/Info or VBRI header's byte count against the file size (a plain CBR file has
  no such count, and is trusted).
* MP4/M4A: every top-level box must fit in the file and ``moov`` must be there (a file
  written front to back gets ``moov`` last; ``mdat`` declares its size up front).
* Ogg (Vorbis, Opus, FLAC-in-Ogg): the last page must be whole (its segment table says how
  long it is). A stream cut exactly at a page boundary is not detected; that is rare, as
  copies write in chunks that do not follow page boundaries.

FLAC, MP3, Ogg: a tail of nothing but zero bytes is a preallocated file still being filled
(PCM files and MP4 padding may end in zeros by right, so not for them).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

TAIL_BYTES = 64 * 1024
_MARGIN = 1024  # bytes of slack for trailing tags and rounding
_ZERO_TAIL_FORMATS = frozenset({"flac", "mp3", "ogg"})


def cut_off_reason(path: Path, fmt: str, info: Any = None) -> str | None:
    """Why ``path`` (a ``fmt`` file, mutagen's stream ``info`` if it could be read) is cut
    off, or None when it looks whole or cannot be judged."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(TAIL_BYTES)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read(TAIL_BYTES)
    except OSError:
        return None
    if fmt in _ZERO_TAIL_FORMATS and size > len(head) and tail and not tail.strip(b"\x00"):
        return (
            f"damaged {fmt}: cut off (its last {len(tail)} bytes are all zero: still being filled)"
        )
    check = _CHECKS.get(fmt)
    if check is None:
        return None
    try:
        return check(path, size, head, tail, info)
    except (struct.error, ValueError, IndexError, OSError):
        return None


def _pcm(path: Path, size: int, head: bytes, tail: bytes, info: Any) -> str | None:
    duration = getattr(info, "length", None)
    bitrate = getattr(info, "bitrate", None)
    fmt = "wav" if head[:4] != b"FORM" else "aiff"
    if not isinstance(duration, int | float) or not duration:
        return None
    if not isinstance(bitrate, int) or not bitrate:
        return None
    expected = duration * bitrate / 8
    if size + _MARGIN >= expected * 0.98:
        return None
    held = max(size - _MARGIN, 0) * 8 / bitrate
    return _says(fmt, f"{duration:.1f} s", f"{held:.1f} s")


def _says(fmt: str, promised: str, held: str) -> str:
    return f"damaged {fmt}: cut off (the header says {promised}, the file holds {held})"


# ----------------------------------------------------------------------------- FLAC

_FLAC_BLOCK_SIZES = {1: 192, **{c: 576 << (c - 2) for c in range(2, 6)}}
_FLAC_BLOCK_SIZES.update({c: 256 << (c - 8) for c in range(8, 16)})


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _utf8_number(data: bytes, pos: int) -> tuple[int, int] | None:
    """FLAC's UTF-8-like coded frame/sample number at ``pos``: (value, next position)."""
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    extra = next((n for n in range(1, 7) if first & (0x80 >> (n + 1)) == 0), None)
    if extra is None or first & 0x40 == 0:
        return None
    value = first & (0x3F >> extra)
    for i in range(1, extra + 1):
        byte = data[pos + i]
        if byte & 0xC0 != 0x80:
            return None
        value = (value << 6) | (byte & 0x3F)
    return value, pos + extra + 1


def flac_frame_end(data: bytes, pos: int, max_blocksize: int) -> int | None:
    """The sample number just after the frame whose header starts at ``pos``, if a valid
    (CRC-checked) FLAC frame header is there."""
    if data[pos] != 0xFF or data[pos + 1] & 0xFE != 0xF8:
        return None
    variable = data[pos + 1] & 1
    size_code, rate_code = data[pos + 2] >> 4, data[pos + 2] & 0x0F
    if size_code == 0 or rate_code == 0x0F or data[pos + 3] & 1:
        return None
    coded = _utf8_number(data, pos + 4)
    if coded is None:
        return None
    number, cur = coded
    if size_code == 6:
        block, cur = data[cur] + 1, cur + 1
    elif size_code == 7:
        block, cur = struct.unpack(">H", data[cur : cur + 2])[0] + 1, cur + 2
    else:
        block = _FLAC_BLOCK_SIZES[size_code]
    cur += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if cur >= len(data) or _crc8(data[pos:cur]) != data[cur]:
        return None
    return (number if variable else number * max_blocksize) + block


def _flac(path: Path, size: int, head: bytes, tail: bytes, info: Any) -> str | None:
    total = getattr(info, "total_samples", 0)
    rate = getattr(info, "sample_rate", 0)
    max_block = getattr(info, "max_blocksize", 0)
    if not total or not rate or not max_block:
        return None  # a stream that did not know its length when written
    for pos in range(len(tail) - 16, -1, -1):
        end = flac_frame_end(tail, pos, max_block)
        if end is not None:
            break
    else:
        return None  # no frame in the tail (long trailing tags?): cannot judge
    if end >= total:
        return None
    return _says("flac", f"{total / rate:.1f} s", f"{end / rate:.1f} s")


# ------------------------------------------------------------------------------ MP3


def _mp3(path: Path, size: int, head: bytes, tail: bytes, info: Any) -> str | None:
    offset = getattr(info, "frame_offset", None)
    length = getattr(info, "length", None)
    if not isinstance(offset, int) or not isinstance(length, int | float):
        return None
    with open(path, "rb") as fh:
        fh.seek(offset)
        frame = fh.read(256)
    promised = _xing_bytes(frame)
    if promised is None:
        return None
    end = offset + promised
    if size + _MARGIN >= end * 0.98:
        return None
    held = length * max(size - offset, 0) / promised
    return _says("mp3", f"{length:.1f} s ({end} bytes)", f"{held:.1f} s ({size} bytes)")


def _xing_bytes(frame: bytes) -> int | None:
    """The audio byte count a Xing/Info or VBRI header in the first frame promises."""
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag, 4, 64)
        if at >= 0:
            flags = struct.unpack(">I", frame[at + 4 : at + 8])[0]
            if not flags & 2:
                return None
            cur = at + 8 + (4 if flags & 1 else 0)
            value = int(struct.unpack(">I", frame[cur : cur + 4])[0])
            return value or None
    if frame[36:40] == b"VBRI":
        value = int(struct.unpack(">I", frame[46:50])[0])
        return value or None
    return None


# ------------------------------------------------------------------------------ MP4


def _mp4(path: Path, size: int, head: bytes, tail: bytes, info: Any) -> str | None:
    pos, seen = 0, set()
    with open(path, "rb") as fh:
        while pos + 8 <= size:
            fh.seek(pos)
            header = fh.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1:
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                box_size = size - pos  # to the end of the file
            if box_size < 8 or not kind.isascii() or not kind.strip(b"\x00"):
                return None  # not a box we can read: let the decoder judge
            if pos + box_size > size:
                name = kind.decode("latin-1")
                return _says("m4a", f"a {name!r} box of {box_size} bytes", f"{size - pos}")
            seen.add(kind)
            pos += box_size
    if b"moov" not in seen:
        return "damaged m4a: cut off (no 'moov' box: the file was not written to its end)"
    return None


# ------------------------------------------------------------------------------ Ogg


def _ogg(path: Path, size: int, head: bytes, tail: bytes, info: Any) -> str | None:
    at = tail.rfind(b"OggS")
    while at > 0 and (
        tail[at + 4 : at + 5] not in (b"\x00", b"") or tail[at + 5 : at + 6] > b"\x07"
    ):
        at = tail.rfind(b"OggS", 0, at)  # "OggS" inside audio data, not a page header
    if at < 0:
        return None
    page = tail[at:]
    if len(page) < 27:
        return _ogg_cut(size, at, tail, len(page))
    segments = page[26]
    if len(page) < 27 + segments:
        return _ogg_cut(size, at, tail, len(page))
    body = sum(page[27 : 27 + segments])
    expected = 27 + segments + body
    if len(page) < expected:
        return _ogg_cut(size, at, tail, len(page), expected)
    return None


def _ogg_cut(size: int, at: int, tail: bytes, held: int, expected: int | None = None) -> str:
    start = size - len(tail) + at
    promised = f"{expected} bytes" if expected else "a whole page"
    return _says("ogg", f"its last page (at byte {start}) is {promised}", f"{held} bytes of it")


_CHECKS = {"wav": _pcm, "aiff": _pcm, "flac": _flac, "mp3": _mp3, "m4a": _mp4, "ogg": _ogg}
