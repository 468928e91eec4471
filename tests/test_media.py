"""Audio probing on real files: real audio from the emulator's writer, fakes written by hand."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import TIT2, TPE1

from daemon.media import AudioProbe, probe, sniff_format

AudioFactory = Callable[..., Path]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("song.wav", "wav"), ("song.flac", "flac"), ("song.mp3", "mp3"), ("song.ogg", "ogg"),
     ("song.aiff", "aiff")],
)  # fmt: skip
def test_real_audio_is_ok_with_duration(audio_file: AudioFactory, name: str, fmt: str) -> None:
    result = probe(audio_file(name, seconds=1.5))
    assert result.ok, result.reason
    assert result.reason is None
    assert result.format == fmt
    assert result.duration_s is not None and result.duration_s == pytest.approx(1.5, abs=0.1)


def _id3_tag(path: Path, artist: str, title: str) -> None:
    audio = mutagen.File(path)
    audio.add_tags()
    audio.tags.add(TPE1(encoding=3, text=[artist]))  # type: ignore[no-untyped-call]
    audio.tags.add(TIT2(encoding=3, text=[title]))  # type: ignore[no-untyped-call]
    audio.save()


@pytest.mark.parametrize("name", ["song.wav", "song.mp3", "song.aiff"])
def test_id3_tags(audio_file: AudioFactory, name: str) -> None:
    path = audio_file(name, seconds=0.5)
    _id3_tag(path, "Кино", "戦場のメリークリスマス 🎄")
    result = probe(path)
    assert (result.artist, result.title) == ("Кино", "戦場のメリークリスマス 🎄")


@pytest.mark.parametrize("name", ["song.flac", "song.ogg"])
def test_vorbis_comment_tags(audio_file: AudioFactory, name: str) -> None:
    path = audio_file(name, seconds=0.5)
    audio = mutagen.File(path)
    audio["artist"] = "Björk"
    audio["title"] = "Jóga"
    audio.save()
    assert (probe(path).artist, probe(path).title) == ("Björk", "Jóga")


def test_untagged_audio_has_no_tags(audio_file: AudioFactory) -> None:
    result = probe(audio_file("plain.flac", seconds=0.5))
    assert (result.artist, result.title) == (None, None)


def _riff_info_chunk(**values: str) -> bytes:
    body = b"INFO"
    for key, text in values.items():
        data = text.encode() + b"\x00"
        body += key.encode() + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
    return b"LIST" + struct.pack("<I", len(body)) + body


def test_riff_info_tags_of_wav(audio_file: AudioFactory) -> None:
    path = audio_file("daw.wav", seconds=0.5)
    raw = path.read_bytes() + _riff_info_chunk(IART="Studio Artist", INAM="Take 3")
    path.write_bytes(raw[:4] + struct.pack("<I", len(raw) - 8) + raw[8:])
    result = probe(path)
    assert result.ok, result.reason
    assert (result.artist, result.title) == ("Studio Artist", "Take 3")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.wav", b"", "empty file (0 bytes)"),
        ("notes.wav", b"just some notes\nnot audio\n",
         "not audio: the file starts with text, not a RIFF/WAVE header"),
        ("bom.flac", "\ufeffпривет мир".encode(),
         "not audio: the file starts with text, not a fLaC header"),
        ("page.mp3", b"<!DOCTYPE html><html>...",
         "not audio: the file starts with text, not an ID3 tag or MPEG audio frame"),
        ("scan.wav", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
         "not audio: the file starts with a PDF document, not a RIFF/WAVE header"),
        ("cover.m4a", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
         "not audio: the file starts with a PNG image, not an MP4 'ftyp' header"),
        ("noise.xyz", bytes(range(1, 8)) * 10,
         "not audio: the file starts with an unrecognised header, not a known audio header"),
    ],
)  # fmt: skip
def test_non_audio_reasons(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert probe(path) == AudioProbe(ok=False, reason=reason)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
        ("fake.flac", b"fLaC" + b"\x00" * 10),
        ("fake.ogg", b"OggS" + b"\x00" * 30),
        ("fake.m4a", b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 16),
        ("fake.aiff", b"FORM\x00\x00\x00\x04AIFF"),
    ],
)
def test_damaged_audio_has_a_reason(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = probe(path)
    assert not result.ok
    assert result.reason is not None and result.reason.startswith("damaged ")


@pytest.mark.parametrize("name", ["cut.wav", "cut.aiff"])
def test_cut_off_pcm_file_is_damaged(audio_file: AudioFactory, name: str) -> None:
    path = audio_file(name, seconds=4.0)
    path.write_bytes(path.read_bytes()[: 44100 * 4])  # about a second of the four
    result = probe(path)
    assert not result.ok
    assert result.reason is not None
    assert result.reason.startswith(f"damaged {name[4:]}: cut off (the header says 4.0 s")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    result = probe(tmp_path / "gone.wav")
    assert not result.ok and result.reason is not None
    assert result.reason.startswith("cannot read the file")
    folder = tmp_path / "dir.wav"
    folder.mkdir()
    assert probe(folder).reason is not None


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"RIFF\x00\x00\x00\x00WAVE", "wav"),
        (b"RF64\xff\xff\xff\xffWAVE", "rf64"),
        (b"RIFF\x00\x00\x00\x00AVI ", None),
        (b"FORM\x00\x00\x00\x00AIFC", "aiff"),
        (b"\x00\x00\x00\x20ftypisom", "m4a"),
        (b"ID3\x04\x00", "mp3"),
        (b"\xff\xfb\x90\x00", "mp3"),
        (b"\xff\xf1\x50\x80", "aac"),
        (b"fLaC", "flac"),
        (b"OggS", "ogg"),
        (b"hello", None),
    ],
)
def test_sniff_format(head: bytes, fmt: str | None) -> None:
    assert sniff_format(head + b"\x00" * 16) == fmt
