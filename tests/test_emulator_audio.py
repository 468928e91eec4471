"""Real audio: the test signal, the band split, and stems served by the emulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from daemon.emulator.audio import BandSplitter, probe, split_to_stems, write_test_audio
from daemon.emulator.testing import create, finished, wait_for


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.wav", "WAV"), ("a.flac", "FLAC"), ("a.mp3", "MP3"), ("a.ogg", "OGG")]
)
def test_write_test_audio_formats(tmp_path: Path, name: str, fmt: str) -> None:
    path = write_test_audio(tmp_path / name, 1.5, sample_rate=22050, channels=2)
    info = probe(path)
    assert info is not None and info.format == fmt and info.channels == 2
    assert abs(info.duration_s - 1.5) < 0.1


def test_write_test_audio_subtype_and_unknown_extension(tmp_path: Path) -> None:
    path = write_test_audio(tmp_path / "x.wav", 0.5, subtype="PCM_24", channels=1)
    assert sf.info(str(path)).subtype == "PCM_24"
    with pytest.raises(ValueError):
        write_test_audio(tmp_path / "x.m4a", 0.5)
    raw = write_test_audio(tmp_path / "x.bin", 0.5, fmt="wav")
    assert probe(raw) is not None


@pytest.mark.parametrize("stems", [1, 2, 4, 6])
def test_band_split_sums_to_input_and_every_band_has_energy(tmp_path: Path, stems: int) -> None:
    path = write_test_audio(tmp_path / "s.wav", 2.0, subtype="FLOAT")
    signal, rate = sf.read(str(path), always_2d=True)
    splitter = BandSplitter(stems, rate, signal.shape[1])
    pieces = [splitter.split(signal[i : i + 10_000]) for i in range(0, len(signal), 10_000)]
    bands = [np.concatenate([p[k] for p in pieces]) for k in range(stems)]
    np.testing.assert_allclose(sum(bands), signal, atol=1e-9)
    rms = [float(np.sqrt(np.mean(b**2))) for b in bands]
    assert all(r > 0.01 for r in rms), rms


def test_split_to_stems_streams_files(tmp_path: Path) -> None:
    src = write_test_audio(tmp_path / "in.wav", 3.0, sample_rate=16000)
    outs = [tmp_path / "low.flac", tmp_path / "high.flac"]
    split_to_stems(src, outs, output_format=5, block_frames=4000)
    for out in outs:
        info = sf.info(str(out))
        assert (info.frames, info.subtype, info.samplerate) == (48000, "PCM_24", 16000)


@pytest.mark.parametrize(("sep_type", "stems"), [(40, 2), (20, 4)])
@pytest.mark.parametrize(
    ("output_format", "fmt", "subtype"), [(1, "WAV", "PCM_16"), (5, "FLAC", "PCM_24")]
)
def test_served_stems_are_real_audio_of_the_input_duration(
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    tmp_path: Path,
    sep_type: int,
    stems: int,
    output_format: int,
    fmt: str,
    subtype: str,
) -> None:
    song = audio_file("in.flac", seconds=2.5, sample_rate=22050)
    server = make_emulator(premium=True, rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=sep_type, output_format=output_format).json()["data"][
            "hash"
        ]
        files = wait_for(c, job_hash, finished)["data"]["files"]
        assert len(files) == stems
        for n, entry in enumerate(files):
            local = tmp_path / f"stem{n}{Path(entry['download']).suffix}"
            local.write_bytes(c.get(entry["url"]).content)
            info = sf.info(str(local))
            assert (info.format, info.subtype, info.channels) == (fmt, subtype, 2)
            assert abs(info.duration - 2.5) <= 0.1


@pytest.mark.parametrize("output_format", [0, 3])
def test_lossy_formats(
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    tmp_path: Path,
    output_format: int,
) -> None:
    song = audio_file("in.wav", seconds=1.0)
    server = make_emulator(rate_limit=False)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        job_hash = create(c, song, sep_type=40, output_format=output_format).json()["data"]["hash"]
        entry = wait_for(c, job_hash, finished)["data"]["files"][0]
        local = tmp_path / entry["download"]
        local.write_bytes(c.get(entry["url"]).content)
    assert local.suffix == (".mp3" if output_format == 0 else ".m4a")
    info = probe(local)
    assert info is not None and info.format == "MP3"  # m4a: mp3 bytes, see docs/emulator.md
    assert abs(info.duration_s - 1.0) <= 0.1
