"""Issue 9 item 10: long names. With a 255-byte name (``é`` is 2 bytes in UTF-8),
``{name} - {stem}.{ext}`` cuts the name part, never the stem label or the extension; the
sidecar and ``.error.txt`` names go through the same safe naming (SMB/NTFS-illegal
characters too); a naming error (ENAMETOOLONG) is permanent at once, not retried. Real
files on the test's filesystem (its 255-byte name limit is real), real journal, emulator."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_engine_rig import rig

from daemon import filing
from daemon.jobs import JobState

LONG = "é" * 125 + "a"  # 251 bytes; with ".wav" the name is 255 bytes, the most ext4 allows
assert len((LONG + ".wav").encode("utf-8")) == 255


def _fields(name: str, stem: str) -> dict[str, str]:
    return {"relative_dir": "", "name": name, "stem": stem, "ext": "flac"}


def test_a_long_name_is_cut_never_the_stem_label_or_extension() -> None:
    for stem in ("Vocals", "Instrumental"):
        path = filing.render_output_path(filing.DEFAULT_TEMPLATE, _fields(LONG, stem))
        folder, leaf = path.parts
        assert leaf.endswith(f" - {stem}.flac"), leaf
        assert leaf.startswith("éé") and len(leaf.encode()) <= 200
        assert len(folder.encode()) <= 200 and folder.startswith("éé")
        leaf.encode("utf-8").decode("utf-8")  # never cut inside a character


def test_illegal_characters_and_trailing_dots_in_derived_names() -> None:
    assert filing.safe_name('a<b>c:d"e|f?g*h. ', ".mvsep.json") == "a_b_c_d_e_f_g_h.mvsep.json"
    name = filing.safe_name(LONG + ".wav", ".error.txt")
    assert name.endswith(".error.txt") and len(name.encode()) <= 200
    path = filing.render_output_path("{name} - {stem}.{ext}", _fields("live: take 2...", "Bass"))
    assert str(path) == "live_ take 2... - Bass.flac"


def test_a_255_byte_name_is_filed_with_its_stem_labels_and_sidecar(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    emu = make_emulator(premium=True)
    with rig(tmp_path, emu) as r:
        song = audio_file(f"in/{LONG}.wav", seconds=0.5)
        job_id = r.submit(song, after_success="archive", sidecar=True)
        assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is JobState.FILED, job.last_error
        names = sorted(Path(p).name for p in job.outputs)
        assert [n.rsplit(" - ", 1)[1] for n in names] == ["Instrumental.wav", "Vocals.wav"]
        assert all(n.startswith("éé") and len(n.encode()) <= 200 for n in names)
        folder = Path(job.outputs[0]).parent
        (sidecar,) = folder.glob("*.mvsep.json")
        assert sidecar.name.startswith("éé") and len(sidecar.name.encode()) <= 200
        assert (job.source_disposed or "").startswith("archived:")
        assert Path((job.source_disposed or "").removeprefix("archived:")).is_file()


def test_a_long_failed_input_gets_its_error_txt(
    tmp_path: Path, make_emulator: Callable[..., Any]
) -> None:
    emu = make_emulator()
    with rig(tmp_path, emu) as r:
        bad = r.inbox / f"{LONG}.wav"
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b"this is not audio at all" * 100)
        job_id = r.submit(bad)
        assert r.engine.run_until_idle(20)
        job = r.job(job_id)
        assert job.state is JobState.FAILED
        assert (job.source_disposed or "").startswith("failed:"), job.last_error
        moved = Path((job.source_disposed or "").removeprefix("failed:"))
        assert moved.is_file()
        (report,) = moved.parent.glob("*.error.txt")
        assert "not an audio file" in report.read_text(encoding="utf-8")
        assert r.creates() == 0


def test_a_naming_error_is_permanent_at_once(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    # 25 folder levels of 200 bytes each: over PATH_MAX (4096), so filing raises
    # ENAMETOOLONG, and would the same way every time
    deep = "/".join(["{name}"] * 25) + "/{name} - {stem}.{ext}"
    emu = make_emulator(premium=True)
    with rig(tmp_path, emu, retry_deadline_s=24 * 3600.0) as r:
        song = audio_file(f"in/{LONG}.wav", seconds=0.5)
        job_id = r.submit(song, output_template=deep)
        assert r.engine.run_until_idle(30)
        job = r.job(job_id)
        assert job.state is JobState.FAILED, job.state
        assert "could not be filed under their names" in (job.last_error or "")
        assert job.attempts <= 1
        assert (job.source_disposed or "").startswith("failed:")
        moved = Path((job.source_disposed or "").removeprefix("failed:"))
        assert moved.is_file() and list(moved.parent.glob("*.error.txt"))
        shutil.rmtree(r.out, ignore_errors=True)
