"""Where finished stems go, and how they get there without ever leaving half a file.

Two halves:

* **Pure templating.** :func:`render_output_path` turns an output template and a mapping of
  fields into a relative :class:`~pathlib.PurePosixPath` whose every component is safe on
  NTFS, SMB and exFAT (:func:`safe_component`). The result can never escape the output root.
* **Atomic filing.** :func:`file_atomically` writes ``dest.part``, fsyncs it, ``os.replace``\\s
  it onto the final name and fsyncs the directory; a collision never overwrites silently.
  :func:`write_sidecar`, :func:`move_to_failed` and :func:`dispose_source` build on it.

Template fields (``TEMPLATE_FIELDS``): ``{inbox}`` inbox name, ``{relative_dir}`` the source's
folder relative to its inbox (may be empty or several levels; an empty one collapses),
``{name}`` the source file name without extension, ``{stem}`` the stem (``Vocals``...),
``{preset}``, ``{sep_type}``, ``{algorithm}``, ``{date}`` (``YYYY-MM-DD``), ``{ext}`` the
stem's extension without dot, ``{artist}``, ``{title}`` (tags), ``{hash}`` the MVSEP hash.
A component that renders empty is dropped here; the engine never passes an empty field but
``{relative_dir}`` (``daemon.engine.outputs`` gives missing tags their fallbacks).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import string
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import structlog

log = structlog.get_logger(__name__)

#: Default output layout: each song's stems together in a folder named after the song, under
#: the same sub-folder the song had in its inbox. ``inbox/live/gig.wav`` separated into vocals
#: and drums gives ``live/gig/gig - Vocals.wav`` and ``live/gig/gig - Drums.wav``.
DEFAULT_TEMPLATE = "{relative_dir}/{name}/{name} - {stem}.{ext}"

TEMPLATE_FIELDS: frozenset[str] = frozenset(
    {
        "inbox", "relative_dir", "name", "stem", "preset", "sep_type", "algorithm",
        "date", "ext", "artist", "title", "hash",
    }
)  # fmt: skip

COLLISION_POLICIES: frozenset[str] = frozenset({"suffix", "overwrite", "skip"})
DISPOSE_MODES: frozenset[str] = frozenset({"archive", "delete", "keep"})

_ILLEGAL = frozenset('<>:"/\\|?*') | {chr(c) for c in range(32)} | {"\x7f"}
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_MAX_EXT_CHARS = 16  # a "suffix" longer than this is part of the name, not an extension
_COPY_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- pure part


def safe_component(text: str, *, max_bytes: int = 200) -> str:
    """Make one path component safe for NTFS, SMB and exFAT (and POSIX).

    NFC-normalises; replaces ``<>:"/\\|?*`` and control characters with ``_``; strips
    leading spaces and trailing dots/spaces; escapes reserved DOS names (``CON``,
    ``com1.wav`` -> ``CON_``, ``com1_.wav``); caps the UTF-8 length at ``max_bytes`` without
    splitting a character and keeping a short extension; ``""``, ``.`` and ``..`` become
    ``_``. Non-Latin scripts and emoji are kept. The default of 200 bytes leaves room under
    the usual 255-byte limit for `` (12)`` collision suffixes and ``.part``.
    """
    if max_bytes < 8:
        raise ValueError(f"max_bytes must be at least 8, got {max_bytes}")
    text = unicodedata.normalize("NFC", text)
    text = "".join("_" if ch in _ILLEGAL else ch for ch in text)
    text = text.lstrip(" ").rstrip(". ")
    if not text:
        return "_"
    text = _escape_reserved(text)
    if len(text.encode("utf-8")) > max_bytes:
        text = _truncate_keeping_ext(text, max_bytes)
    return text or "_"


def _escape_reserved(text: str) -> str:
    base, dot, rest = text.partition(".")
    if base.rstrip(" ").upper() in _RESERVED:
        return f"{base}_{dot}{rest}"
    return text


def _split_ext(text: str) -> tuple[str, str]:
    base, dot, ext = text.rpartition(".")
    if dot and base and 0 < len(ext) <= _MAX_EXT_CHARS and " " not in ext:
        return base, "." + ext
    return text, ""


def _truncate_keeping_ext(text: str, max_bytes: int) -> str:
    base, ext = _split_ext(text)
    if len(ext.encode("utf-8")) > max_bytes // 2:
        base, ext = text, ""
    budget = max_bytes - len(ext.encode("utf-8"))
    cut = _cut_utf8(base, budget).rstrip(". ")
    return (cut or "_") + ext


def _cut_utf8(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` UTF-8 bytes, never inside a character, and not
    leaving a dangling combining mark, joiner or variation selector at the cut."""
    cut = text.encode("utf-8")[: max(0, budget)].decode("utf-8", errors="ignore")
    while cut and (unicodedata.combining(cut[-1]) or cut[-1] in "\u200d\ufe0e\ufe0f"):
        cut = cut[:-1]
    return cut


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def safe_name(base: str, suffix: str, *, max_bytes: int = 200) -> str:
    """``base + suffix`` as one safe component (:func:`safe_component`), ``base`` cut to make
    room: the suffix (``.mvsep.json``, ``.error.txt``, `` - Vocals.wav``) is never cut."""
    clean_suffix = "".join("_" if ch in _ILLEGAL else ch for ch in suffix).rstrip(". ")
    room = max_bytes - _utf8_len(clean_suffix)
    if room < 1:
        return safe_component(base + suffix, max_bytes=max_bytes)
    clean = safe_component(base, max_bytes=max(8, _utf8_len(base) + 8))
    if _utf8_len(clean) > room:
        clean = _cut_utf8(clean, room).rstrip(". ") or "_"
    return safe_component(clean + clean_suffix, max_bytes=max_bytes)


def _template_fields(template: str) -> Iterator[str]:
    """Yield the field names of ``template``; raise ``ValueError`` on anything but ``{name}``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"output template {template!r} is malformed: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"output template {template!r}: {shown} is not allowed; "
                "write plain fields such as {name}"
            )
        yield field


def validate_template(template: str) -> None:
    """Raise ``ValueError`` (naming the field and listing valid ones) if ``template`` is bad.

    A template must be relative (no leading ``/``), may not contain ``..`` components, and
    uses only the fields in :data:`TEMPLATE_FIELDS`.
    """
    valid = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
    for field in _template_fields(template):
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"output template {template!r}: unknown field {{{field}}}; valid fields: {valid}"
            )
    if template.startswith(("/", "\\")) or (len(template) > 1 and template[1] == ":"):
        raise ValueError(f"output template {template!r} must be relative to the output folder")
    if any(part == ".." for part in _template_parts(template)):
        raise ValueError(f"output template {template!r} may not contain '..'")
    if not _template_parts(template)[-1:]:
        raise ValueError(f"output template {template!r} has no file name")


def _template_parts(template: str) -> list[str]:
    return [p for p in template.replace("\\", "/").split("/") if p not in ("", ".")]


def render_output_path(template: str, fields: Mapping[str, str]) -> PurePosixPath:
    """Render ``template`` with ``fields`` into a safe relative path.

    Fields the template uses but ``fields`` lacks render empty. ``{relative_dir}`` standing
    alone as a component expands to its sub-folders (each made safe; ``.``/``..`` can not
    escape); elsewhere a ``/`` inside a value is replaced. Components that render empty are
    dropped. Raises ``ValueError`` for unknown fields or when no file name is left.
    """
    validate_template(template)
    parts: list[str] = []
    for part in _template_parts(template):
        if part == "{relative_dir}":
            parts.extend(_expand_relative_dir(fields.get("relative_dir", "")))
            continue
        rendered = _render_fitting(part, fields)
        if rendered.strip():
            parts.append(safe_component(rendered))
    if not parts:
        raise ValueError(f"output template {template!r} rendered an empty path")
    return PurePosixPath(*parts)


_SHRINKABLE = ("name", "title", "artist", "algorithm", "preset", "inbox", "relative_dir")
"""Free-text fields a too-long component is cut in; never ``{stem}``, ``{ext}``, ``{date}``,
``{hash}`` or ``{sep_type}`` (a cut stem label loses what the file is)."""

_COMPONENT_BYTES = 200  # safe_component's default: room for " (12)" and ".part"


def _render_fitting(part: str, fields: Mapping[str, str]) -> str:
    """Render one template component; if it would be longer than a safe component may be,
    cut the longest free-text field (``{name}``, ``{title}``...) until it fits, so that
    ``{name} - {stem}.{ext}`` keeps `` - Vocals.wav`` whole (issue 9 item 10)."""
    values = {k: str(v) for k, v in fields.items()}
    used = [f for f in dict.fromkeys(_template_fields(part)) if f in _SHRINKABLE]
    text = part.format_map(_Blank(values))
    for _ in range(4 * len(used)):
        over = _utf8_len(safe_component(text, max_bytes=_utf8_len(text) + 8)) - _COMPONENT_BYTES
        longest = max(used, key=lambda f: _utf8_len(values.get(f, "")))
        current = values.get(longest, "")
        if over <= 0 or len(current) <= 1:
            break
        cut = _cut_utf8(current, _utf8_len(current) - over).rstrip(" ")
        values[longest] = cut or current[0]
        text = part.format_map(_Blank(values))
    return text


def _expand_relative_dir(value: str) -> list[str]:
    pieces = [p for p in value.replace("\\", "/").split("/") if p.strip() not in ("", ".")]
    return [safe_component(p) for p in pieces]


class _Blank(dict[str, str]):
    """``format_map`` helper: a missing field renders as an empty string."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__({k: str(v) for k, v in fields.items()})

    def __missing__(self, key: str) -> str:
        return ""


def with_counter(dest: Path, n: int) -> Path:
    """``name (n).ext`` beside ``dest`` (pure)."""
    base, ext = _split_ext(dest.name)
    return dest.with_name(f"{base} ({n}){ext}")


def resolve_collision(dest: Path, policy: str = "suffix") -> Path:
    """Plan the final path for ``dest`` under ``policy`` (only ``exists()`` checks).

    ``suffix``: ``dest`` if free, else the first free ``name (2).ext``, ``name (3).ext``...
    ``overwrite`` and ``skip``: ``dest`` itself (the caller writes over it, or keeps it).
    """
    if policy not in COLLISION_POLICIES:
        raise ValueError(f"unknown collision policy {policy!r}; expected suffix, overwrite, skip")
    if policy != "suffix" or not os.path.lexists(dest):
        return dest
    n = 2
    while os.path.lexists(with_counter(dest, n)):
        n += 1
    return with_counter(dest, n)


# --------------------------------------------------------------------------- I/O part


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


NAMING_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL})


def is_naming_error(exc: BaseException) -> bool:
    """An error a name causes (too long, not encodable, refused by the share): the same
    name fails the same way every time, so it is permanent at once, never retried."""
    return isinstance(exc, OSError) and exc.errno in NAMING_ERRNOS


def fsync_dir(directory: Path) -> None:
    """Persist a rename. Some filesystems (SMB, Windows) refuse: that is not an error."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("directory fsync not supported", path=str(directory), error=str(exc))
    finally:
        os.close(fd)


def _copy_stream(src: BinaryIO, dst: BinaryIO) -> None:
    while chunk := src.read(_COPY_CHUNK):
        dst.write(chunk)


def write_atomically(dest: Path, write: Callable[[BinaryIO], object]) -> Path:
    """The one atomic write: ``write(fh)`` fills ``dest.part``, which is fsynced,
    ``os.replace``\\d onto ``dest`` (parents created), and the directory fsynced. If anything
    raises, the ``.part`` is removed and ``dest`` is untouched. Returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    try:
        with open(part, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest


def copy_atomically(src: Path, dest: Path) -> Path:
    """Copy ``src`` onto ``dest`` through :func:`write_atomically`."""
    with open(src, "rb") as fin:
        return write_atomically(dest, lambda fout: _copy_stream(fin, fout))


def file_atomically(
    src: Path, dest: Path, *, on_collision: str = "suffix", move: bool = False
) -> Path:
    """Copy (or, with ``move=True``, move) ``src`` to ``dest`` atomically; return the final path.

    Creates ``dest``'s parents, copies into ``dest.part``, fsyncs it, ``os.replace``\\s it
    onto the final name and fsyncs the directory. With ``move`` on one filesystem, ``src`` is
    fsynced and renamed straight onto the final name; across filesystems it is copied and
    deleted only once the copy is in place. ``on_collision``: ``suffix`` (``name (2).ext``),
    ``overwrite``, or ``skip`` (returns the existing path untouched, ``src`` left as it is).
    On any error the ``.part`` is removed and the error re-raised.

    Assumes one writer per output folder: the collision check and the rename are not one
    atomic step.
    """
    if on_collision not in COLLISION_POLICIES:
        raise ValueError(f"unknown collision policy {on_collision!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if on_collision == "skip" and os.path.lexists(dest):
        log.info("filing skipped: destination exists", path=str(dest))
        return dest
    final = resolve_collision(dest, on_collision)
    if move and _try_rename(src, final):
        fsync_dir(final.parent)
    else:
        copy_atomically(src, final)
        if move:
            src.unlink(missing_ok=True)
    log.debug("filed", path=str(final))
    return final


def _try_rename(src: Path, final: Path) -> bool:
    """Rename on the same filesystem (atomic already, no ``.part`` needed); False on EXDEV."""
    try:
        with open(src, "rb") as fh:  # the bytes must be durable before the name is
            os.fsync(fh.fileno())
        os.rename(src, final)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _write_text_atomically(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    return write_atomically(path, lambda fh: fh.write(data))


def write_sidecar(path: Path, data: Mapping[str, object]) -> Path:
    """Write ``data`` as UTF-8 JSON (indent 2) to ``path`` atomically; return ``path``.

    Values JSON does not know (paths, datetimes) are written as their ``str()``.
    """
    text = json.dumps(dict(data), indent=2, ensure_ascii=False, default=str) + "\n"
    return _write_text_atomically(path, text)


def _move(src: Path, dest: Path) -> Path:
    """Move ``src`` to a free name at ``dest`` (suffix on collision), across filesystems too."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    final = resolve_collision(dest, "suffix")
    try:
        os.rename(src, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        return file_atomically(src, final, on_collision="suffix", move=True)
    fsync_dir(final.parent)
    return final


def _now_local() -> datetime:
    return datetime.now().astimezone()


def error_report(
    filed_as: Path, *, original: Path, reason: str, details: Mapping[str, str], now: datetime
) -> str:
    """The text of ``NAME.error.txt``: reason, time, details and how to retry."""
    lines = [
        "mvsep-watch could not process this file.",
        "",
        f"File:      {filed_as.name}",
        f"Reason:    {reason}",
        f"Time:      {now.isoformat(timespec='seconds')}",
        f"Came from: {original}",
    ]
    lines += [f"{key}: {value}" for key, value in details.items()]
    lines += [
        "",
        "How to retry",
        f"  Fix the cause above (for example replace a damaged or non-audio file, or correct "
        f"the preset in the configuration), then move {filed_as.name!r} back into its inbox "
        f"folder ({original.parent}). mvsep-watch picks it up again as a new file. "
        f"You may delete this .error.txt afterwards.",
        "",
    ]
    return "\n".join(lines)


def move_to_failed(
    src: Path,
    failed_dir: Path,
    *,
    reason: str,
    details: Mapping[str, str],
    now: datetime | None = None,
) -> Path:
    """Move ``src`` into ``failed_dir`` (never overwriting: suffix) and explain why beside it.

    Writes ``<filed name>.error.txt`` with the reason, the local time with its UTC offset,
    ``details`` (e.g. ``{"MVSEP hash": ...}``) and a "How to retry" paragraph. Returns the
    failed file's new path.
    """
    when = now if now is not None else _now_local()
    filed = _move(src, failed_dir / safe_component(src.name))
    report = error_report(filed, original=src, reason=reason, details=details, now=when)
    _write_text_atomically(error_path(filed), report)
    return filed


def error_path(filed: Path) -> Path:
    """``NAME.error.txt`` beside a failed input, through :func:`safe_name` (a 255-byte name
    plus ``.error.txt`` would not fit)."""
    return filed.with_name(safe_name(filed.name, ".error.txt"))


def dispose_source(src: Path, *, mode: str, archive_dir: Path | None = None) -> Path | None:
    """Deal with a source whose stems are safely filed.

    ``keep``: leave it, return ``src``. ``delete``: remove it, return ``None``. ``archive``:
    move it into ``archive_dir`` (suffix on collision), return the new path. Idempotent: a
    source already gone is fine for ``archive``/``delete`` (returns ``None``).
    """
    if mode not in DISPOSE_MODES:
        raise ValueError(f"unknown source disposal mode {mode!r}; expected archive, delete, keep")
    if mode == "keep":
        return src
    if mode == "delete":
        src.unlink(missing_ok=True)
        return None
    if archive_dir is None:
        raise ValueError("dispose_source(mode='archive') needs archive_dir")
    if not src.exists():
        return None
    return _move(src, archive_dir / safe_component(src.name))


__all__ = [
    "COLLISION_POLICIES",
    "DEFAULT_TEMPLATE",
    "DISPOSE_MODES",
    "TEMPLATE_FIELDS",
    "dispose_source",
    "error_path",
    "error_report",
    "file_atomically",
    "is_naming_error",
    "move_to_failed",
    "render_output_path",
    "resolve_collision",
    "safe_component",
    "safe_name",
    "validate_template",
    "write_atomically",
    "copy_atomically",
    "write_sidecar",
]
