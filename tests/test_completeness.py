"""Completeness of every accepted container, on real files cut as a stalled copy leaves them.

FLAC, MP3 (with its Xing header) and Ogg Vorbis are real encodes from the emulator's writer
(libsndfile); the MP4 is built box by box here (nothing on this machine writes AAC), the
way a front-to-back writer leaves it: ``ftyp``, ``mdat``, then ``moov``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.completeness import cut_off_reason
from daemon.media import probe

AudioFactory = Callable[..., Path]


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("name", ["song.flac", "song.mp3", "song.ogg", "song.wav", "song.aiff"])
def test_a_file_cut_at_30_percent_is_cut_off(audio_file: AudioFactory, name: str) -> None:
    path = cut(audio_file(name, seconds=6.0), 0.3)
    result = probe(path)
    assert not result.ok
    assert result.cut_off, result.reason
    assert result.reason is not None and "cut off" in result.reason


@pytest.mark.parametrize("name", ["song.flac", "song.mp3", "song.ogg", "song.wav", "song.aiff"])
def test_a_complete_file_is_not_cut_off(audio_file: AudioFactory, name: str) -> None:
    result = probe(audio_file(name, seconds=6.0))
    assert result.ok, result.reason
    assert not result.cut_off


def test_flac_reason_names_both_durations(audio_file: AudioFactory) -> None:
    result = probe(cut(audio_file("song.flac", seconds=6.0), 0.5))
    assert result.reason is not None
    assert result.reason.startswith("damaged flac: cut off (the header says 6.0 s, the file holds")


def test_preallocated_flac_still_being_filled_is_cut_off(audio_file: AudioFactory) -> None:
    path = audio_file("song.flac", seconds=6.0)
    data = path.read_bytes()
    keep = len(data) // 3
    path.write_bytes(data[:keep] + bytes(len(data) - keep))  # full size, the rest zeros
    result = probe(path)
    assert result.cut_off, result.reason


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_bytes(audio_bytes: int = 200_000) -> bytes:
    mvhd = box(b"mvhd", bytes(4) + bytes(8) + struct.pack(">II", 1000, 6000) + bytes(80))
    return (
        box(b"ftyp", b"M4A \x00\x00\x00\x00M4A mp42isom")
        + box(b"mdat", bytes(range(256)) * (audio_bytes // 256))
        + box(b"moov", mvhd)
    )


def test_mp4_complete_has_moov_and_whole_boxes(tmp_path: Path) -> None:
    path = tmp_path / "song.m4a"
    path.write_bytes(mp4_bytes())
    assert cut_off_reason(path, "m4a") is None


def test_mp4_cut_in_mdat_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "song.m4a"
    path.write_bytes(mp4_bytes())
    cut(path, 0.3)
    result = probe(path)  # mutagen cannot read it (no moov); it is cut off, not damaged
    assert result.cut_off, result.reason
    assert result.reason is not None and "'mdat' box" in result.reason


def test_mp4_without_moov_yet_is_cut_off(tmp_path: Path) -> None:
    data = mp4_bytes()
    path = tmp_path / "song.m4a"
    path.write_bytes(data[: data.rindex(b"moov") - 4])  # mdat whole, moov not written yet
    reason = cut_off_reason(path, "m4a")
    assert reason is not None and "no 'moov'" in reason


def test_damaged_but_whole_files_are_not_called_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "bad.flac"
    path.write_bytes(b"fLaC" + bytes(30))
    result = probe(path)
    assert not result.ok and not result.cut_off


def test_wav_ending_in_digital_silence_is_whole(audio_file: AudioFactory) -> None:
    path = audio_file("song.wav", seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[:-200_000] + bytes(200_000))  # a silent ending, same length
    assert probe(path).ok
