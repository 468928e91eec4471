"""Output templating, safe names and atomic filing, on real files under tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import pytest

from daemon.filing import (
    DEFAULT_TEMPLATE,
    dispose_source,
    file_atomically,
    move_to_failed,
    render_output_path,
    resolve_collision,
    safe_component,
    validate_template,
    write_sidecar,
)

# ------------------------------------------------------------------------- safe names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Song", "Song"),
        ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
        ("tab\there\x00nul\x1fx", "tab_here_nul_x"),
        ("trailing dots...", "trailing dots"),
        ("trailing spaces   ", "trailing spaces"),
        ("  leading spaces", "leading spaces"),
        ("dots and spaces . . ", "dots and spaces"),
        ("", "_"),
        ("   ", "_"),
        (".", "_"),
        ("..", "_"),
        ("...", "_"),
        ("CON", "CON_"),
        ("con", "con_"),
        ("nul.wav", "nul_.wav"),
        ("COM1.tar.gz", "COM1_.tar.gz"),
        ("LPT9", "LPT9_"),
        ("COM10", "COM10"),
        ("CONSOLE", "CONSOLE"),
        ("Кино - Группа крови", "Кино - Группа крови"),
        ("坂本龍一 - 戦場のメリークリスマス", "坂本龍一 - 戦場のメリークリスマス"),
        ("🎸 Riff 🔥", "🎸 Riff 🔥"),
        ("AC/DC", "AC_DC"),
        ("e\u0301te\u0301", "été"),  # NFD -> NFC
        ("...Baby One More Time", "...Baby One More Time"),
    ],
)
def test_safe_component(text: str, expected: str) -> None:
    assert safe_component(text) == expected


@pytest.mark.parametrize(
    ("char", "max_bytes"),
    [("a", 255), ("é", 255), ("Ж", 200), ("戦", 255), ("🎵", 255), ("🎵", 201), ("戦", 100)],
)
def test_safe_component_caps_bytes_and_keeps_extension(char: str, max_bytes: int) -> None:
    name = char * 300 + ".flac"
    out = safe_component(name, max_bytes=max_bytes)
    assert len(out.encode("utf-8")) <= max_bytes
    assert out.endswith(".flac")
    stem = out.removesuffix(".flac")
    assert stem and set(stem) == {char}  # whole characters only, never a split one


def test_safe_component_truncation_does_not_leave_a_dangling_joiner() -> None:
    family = "👨\u200d👩\u200d👧"  # one grapheme made of joined emoji
    out = safe_component(family * 40, max_bytes=50)
    assert len(out.encode()) <= 50
    assert not out.endswith("\u200d")


def test_safe_component_truncation_strips_new_trailing_dot() -> None:
    out = safe_component("a" * 9 + "." + "b" * 20, max_bytes=10)
    assert not out.endswith((".", " "))
    assert len(out.encode()) <= 10


def test_safe_component_long_extension_is_not_kept_whole() -> None:
    out = safe_component("x" * 300 + "." + "y" * 120, max_bytes=200)
    assert len(out.encode()) <= 200


# ------------------------------------------------------------------------- templates

FIELDS = {
    "inbox": "music",
    "relative_dir": "",
    "name": "Song",
    "stem": "Vocals",
    "preset": "karaoke",
    "sep_type": "49",
    "algorithm": "MVSep Karaoke (lead/back vocals)",
    "date": "2025-01-31",
    "ext": "flac",
    "artist": "Артист",
    "title": "Title",
}


@pytest.mark.parametrize(
    ("template", "overrides", "expected"),
    [
        (DEFAULT_TEMPLATE, {}, "Song/Song - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"relative_dir": "live/2024"}, "live/2024/Song/Song - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"relative_dir": "live\\gig"}, "live/gig/Song/Song - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"relative_dir": "./a/./b/"}, "a/b/Song/Song - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"relative_dir": "../../etc"}, "_/_/etc/Song/Song - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": ".."}, "_/.. - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": "../../x"}, ".._.._x/.._.._x - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": "/etc/passwd"}, "_etc_passwd/_etc_passwd - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": "CON"}, "CON_/CON - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": "Hey."}, "Hey/Hey. - Vocals.flac"),
        (DEFAULT_TEMPLATE, {"name": "坂本 🎹"}, "坂本 🎹/坂本 🎹 - Vocals.flac"),
        ("{artist}/{title}/{stem}.{ext}", {}, "Артист/Title/Vocals.flac"),
        ("{artist}/{title}/{stem}.{ext}", {"artist": ""}, "Title/Vocals.flac"),
        ("{inbox}/{preset}/{date}/{name}_{stem}.{ext}", {},
         "music/karaoke/2025-01-31/Song_Vocals.flac"),
        ("{algorithm}/{name} [{sep_type}] {stem}.{ext}", {},
         "MVSep Karaoke (lead_back vocals)/Song [49] Vocals.flac"),
        ("/{name}.{ext}", {}, None),
        ("{name}-{stem}.{ext}", {"stem": "a:b"}, "Song-a_b.flac"),
        ("{relative_dir}-{name}.{ext}", {"relative_dir": "a/b"}, "a_b-Song.flac"),
        ("{hash}/{stem}.{ext}", {"hash": "2025-ab-s.wav"}, "2025-ab-s.wav/Vocals.flac"),
        ("{title}", {"title": "x" * 300}, "x" * 200),
    ],
)  # fmt: skip
def test_render_output_path(template: str, overrides: dict[str, str], expected: str | None) -> None:
    fields = {**FIELDS, **overrides}
    if expected is None:
        with pytest.raises(ValueError, match="relative"):
            render_output_path(template, fields)
        return
    out = render_output_path(template, fields)
    assert out == PurePosixPath(expected)
    assert not out.is_absolute() and ".." not in out.parts


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nmae}/{stem}.{ext}", r"unknown field \{nmae\}; valid fields: .*\{name\}"),
        ("{name!r}.{ext}", "not allowed"),
        ("{name:>10}.{ext}", "not allowed"),
        ("{name.upper}.{ext}", "not allowed"),
        ("{name[0]}.{ext}", "not allowed"),
        ("{name", "malformed"),
        ("../{name}.{ext}", r"'\.\.'"),
        ("a/../../{name}", r"'\.\.'"),
        ("/abs/{name}", "relative"),
        ("C:/music/{name}", "relative"),
        ("", "no file name"),
        ("//", "relative"),
        ("./.", "no file name"),
    ],
)
def test_validate_template_rejects(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_template(template)


def test_default_template_is_valid() -> None:
    validate_template(DEFAULT_TEMPLATE)


def test_render_rejects_an_all_empty_path() -> None:
    with pytest.raises(ValueError, match="empty path"):
        render_output_path("{artist}/{title}", {"artist": "", "title": " "})


# ------------------------------------------------------------------------- atomic filing


def _src(tmp_path: Path, data: bytes = b"stem-bytes", name: str = "dl.tmp") -> Path:
    src = tmp_path / "downloads" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src


def test_file_atomically_copies_and_creates_parents(tmp_path: Path) -> None:
    src = _src(tmp_path)
    dest = tmp_path / "out" / "a" / "b" / "Song - Vocals.wav"
    assert file_atomically(src, dest) == dest
    assert dest.read_bytes() == b"stem-bytes"
    assert src.exists()  # copy by default
    assert not list(dest.parent.glob("*.part"))


def test_file_atomically_move_same_filesystem(tmp_path: Path) -> None:
    src = _src(tmp_path)
    dest = tmp_path / "out" / "x.wav"
    assert file_atomically(src, dest, move=True) == dest
    assert dest.read_bytes() == b"stem-bytes" and not src.exists()


def test_collision_suffix_never_overwrites(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "Song - Vocals.wav"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    first = file_atomically(_src(tmp_path, b"new1"), dest)
    second = file_atomically(_src(tmp_path, b"new2"), dest)
    assert first.name == "Song - Vocals (2).wav"
    assert second.name == "Song - Vocals (3).wav"
    assert dest.read_bytes() == b"old"
    assert (first.read_bytes(), second.read_bytes()) == (b"new1", b"new2")


def test_collision_overwrite_and_skip(tmp_path: Path) -> None:
    dest = tmp_path / "x.wav"
    dest.write_bytes(b"old")
    assert file_atomically(_src(tmp_path, b"skip"), dest, on_collision="skip") == dest
    assert dest.read_bytes() == b"old"
    assert file_atomically(_src(tmp_path, b"new"), dest, on_collision="overwrite") == dest
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads", "x.wav"]


def test_resolve_collision_plans_without_writing(tmp_path: Path) -> None:
    dest = tmp_path / "Song.tar.gz"
    assert resolve_collision(dest, "suffix") == dest
    dest.write_bytes(b"")
    (tmp_path / "Song.tar (2).gz").write_bytes(b"")
    assert resolve_collision(dest, "suffix").name == "Song.tar (3).gz"
    assert resolve_collision(dest, "overwrite") == dest
    assert resolve_collision(dest, "skip") == dest
    with pytest.raises(ValueError, match="collision policy"):
        resolve_collision(dest, "rename")


def test_file_atomically_missing_source_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "x.wav"
    with pytest.raises(FileNotFoundError):
        file_atomically(tmp_path / "nope", dest)
    assert list((tmp_path / "out").iterdir()) == []


def test_file_atomically_disk_full_leaves_no_part(tmp_path: Path) -> None:
    """A full disk, for real, in a subprocess.

    No tiny size-limited filesystem can be mounted here, so RLIMIT_FSIZE stands in for it:
    the kernel refuses writes past the limit (EFBIG, with SIGXFSZ ignored) exactly where a
    full disk would refuse them (ENOSPC) — mid-copy, after part of the file was written.
    """
    src = _src(tmp_path, b"x" * 300_000)
    dest = tmp_path / "out" / "big.wav"
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from daemon.filing import file_atomically
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            file_atomically(Path({str(src)!r}), Path({str(dest)!r}))
        except OSError as exc:
            print("errno", exc.errno)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "errno 27" in done.stdout  # EFBIG
    assert list(dest.parent.iterdir()) == []  # neither big.wav nor big.wav.part
    assert src.stat().st_size == 300_000  # the source is untouched


def test_write_sidecar_is_utf8_json(tmp_path: Path) -> None:
    path = tmp_path / "Song" / "Song.mvsep.json"
    data = {"source": Path("/in/Кино.wav"), "hash": "h", "dates": {"filed": "2025"}, "n": 1}
    assert write_sidecar(path, data) == path
    text = path.read_text(encoding="utf-8")
    assert "Кино" in text and '\n  "hash": "h"' in text
    assert json.loads(text)["source"] == "/in/Кино.wav"
    write_sidecar(path, {"again": True})  # rewriting is allowed and atomic
    assert json.loads(path.read_text())["again"] is True
    assert [p.name for p in path.parent.iterdir()] == ["Song.mvsep.json"]


# ------------------------------------------------------------------------- failed folder


def test_move_to_failed_writes_reason_beside(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "karaoke"
    inbox.mkdir(parents=True)
    src = inbox / "bad.wav"
    src.write_text("hello")
    failed = tmp_path / "failed"
    now = datetime(2025, 1, 31, 14, 58, 33, tzinfo=timezone(timedelta(hours=1)))
    out = move_to_failed(
        src, failed, reason="not audio: the file starts with text", details={"MVSEP hash": "h1"},
        now=now,
    )  # fmt: skip
    assert out == failed / "bad.wav" and out.read_text() == "hello" and not src.exists()
    report = (failed / "bad.wav.error.txt").read_text(encoding="utf-8")
    assert "Reason:    not audio: the file starts with text" in report
    assert "Time:      2025-01-31T14:58:33+01:00" in report
    assert "MVSEP hash: h1" in report
    assert "How to retry" in report and str(inbox) in report


def test_move_to_failed_never_overwrites_and_uses_local_time(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "bad.wav").write_text("first")
    src = tmp_path / "bad.wav"
    src.write_text("second")
    out = move_to_failed(src, failed, reason="damaged", details={})
    assert out.name == "bad (2).wav" and out.read_text() == "second"
    assert (failed / "bad.wav").read_text() == "first"
    report = (failed / "bad (2).wav.error.txt").read_text()
    stamp = report.split("Time:")[1].split("\n")[0].strip()
    assert datetime.fromisoformat(stamp).utcoffset() is not None


# ------------------------------------------------------------------------- disposal


def test_dispose_source_modes(tmp_path: Path) -> None:
    src = tmp_path / "in" / "song.wav"
    src.parent.mkdir()
    src.write_bytes(b"a")
    assert dispose_source(src, mode="keep", archive_dir=None) == src and src.exists()
    archive = tmp_path / "archive"
    (archive).mkdir()
    (archive / "song.wav").write_bytes(b"older")
    moved = dispose_source(src, mode="archive", archive_dir=archive)
    assert moved == archive / "song (2).wav" and moved.read_bytes() == b"a"
    assert dispose_source(src, mode="archive", archive_dir=archive) is None  # idempotent
    assert dispose_source(src, mode="delete", archive_dir=None) is None
    other = tmp_path / "in" / "other.wav"
    other.write_bytes(b"b")
    assert dispose_source(other, mode="delete") is None and not other.exists()
    assert dispose_source(other, mode="delete") is None


def test_dispose_source_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="archive_dir"):
        dispose_source(tmp_path / "x", mode="archive", archive_dir=None)
    with pytest.raises(ValueError, match="mode"):
        dispose_source(tmp_path / "x", mode="shred")
