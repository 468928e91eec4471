"""``mvsep-watch check-config``: everything ``run`` checks, every problem at once.

One line per finding: ``error:`` (``run`` would refuse to start, or could not work),
``warning:`` (it would start, but look), ``ok:`` (what was checked and passed), ``note:``
(which catalogue the presets were checked against). In order:

* the config file: every unknown key and invalid value, missing presets, nested folders;
* the base URL answers (the catalogue is fetched: it is also the one presets are checked
  against), and the token is accepted (one ``/api/app/user`` call);
* every preset against the catalogue: the live one, else the cached copy (saying which);
* the folders: inboxes readable and writable (a missing one is a warning naming it: the
  daemon waits for it), outputs, archive and failed folders writable or creatable, and on
  the inbox's filesystem (else a warning: files are copied, not renamed), the journal's folder
  and no ``<journal>.gone`` marker (a lost journal: ``run`` refuses to start).

Exit codes: 0 all ok, 1 warnings only, 2 errors.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.catalogue import (
    ORIGIN_LIVE,
    CatalogueUnavailableError,
    SourcedCatalogue,
    live_or_cached,
)
from daemon.commands import EXIT_CONFIG, EXIT_OK, EXIT_WARN, SubParsers, help_text, setup_logs
from daemon.config import InboxSection, Settings
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.mvsep.client import MvsepClient

ERROR, WARNING, OK, NOTE = "error", "warning", "ok", "note"


@dataclass
class Report:
    """The findings, in the order they were made."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.lines.append((ERROR, text))

    def warn(self, text: str) -> None:
        self.lines.append((WARNING, text))

    def ok(self, text: str) -> None:
        self.lines.append((OK, text))

    def note(self, text: str) -> None:
        """Context for the lines around it (which catalogue was used); counts for nothing."""
        self.lines.append((NOTE, text))

    def count(self, level: str) -> int:
        return sum(1 for lvl, _ in self.lines if lvl == level)

    @property
    def exit_code(self) -> int:
        if self.count(ERROR):
            return EXIT_CONFIG
        return EXIT_WARN if self.count(WARNING) else EXIT_OK


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "check-config",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from daemon.config import collect_settings
    from daemon.logs import configure_logging

    configure_logging(fmt=args.log_format or "auto", level="info")
    report = Report()
    try:
        settings, path, problems = collect_settings(
            args.config, require_token=True, require_inboxes=True
        )
    except ConfigError as exc:  # unreadable or not TOML: nothing else can be checked
        for line in exc.problems:
            report.error(line)
        return finish(report, None)
    for line in problems:
        report.error(line)
    if settings is not None:
        setup_logs(args, settings)
        check_settings_further(settings, str(path), report)
    return finish(report, path)


def check_settings_further(settings: Settings, where: str, report: Report) -> None:
    """What the config file alone cannot say: templates, MVSEP, presets, folders."""
    check_templates(settings, where, report)
    check_notify(settings, where, report)
    check_mvsep(settings, where, report)
    check_folders(settings, where, report)


def check_notify(settings: Settings, where: str, report: Report) -> None:
    """Each ``[notify] urls`` entry apprise can use (the URL itself never printed)."""
    from daemon.notify.sender import url_problems

    for line in url_problems(settings.notify.urls, where=where):
        report.error(line)


def finish(report: Report, path: Path | None) -> int:
    for level, text in report.lines:
        print(f"{level}: {text}")
    errors, warnings = report.count(ERROR), report.count(WARNING)
    name = str(path) if path is not None else "config"
    if errors or warnings:
        print(f"{name}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
    else:
        print(f"{name}: OK")
    return report.exit_code


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith(("s", "x")) else f"{n} {word}s"


# ---------------------------------------------------------------------- templates


def check_templates(settings: Settings, where: str, report: Report) -> None:
    from daemon.filing import DEFAULT_TEMPLATE, validate_template

    for i, inbox in enumerate(settings.inbox):
        try:
            validate_template(inbox.output_template or DEFAULT_TEMPLATE)
        except ValueError as exc:
            report.error(f"{where}: [[inbox]] #{i + 1} output_template: {exc}")


# ---------------------------------------------------------------------- MVSEP


def check_mvsep(settings: Settings, where: str, report: Report) -> None:
    """The base URL (by fetching the catalogue), the token, then the presets."""
    from daemon.commands.quick import catalogue_cache, quick_client

    url = settings.mvsep.base_url
    with quick_client(settings) as client:
        sourced: SourcedCatalogue | None = None
        try:
            sourced = live_or_cached(catalogue_cache(settings, client))
            error = sourced.error or ""
        except CatalogueUnavailableError as exc:
            error = str(exc)
        reachable = sourced is not None and sourced.origin == ORIGIN_LIVE
        if reachable:
            report.ok(f"base URL {url} answers")
        else:
            report.error(f"{where}: [mvsep] base_url: {url} does not answer: {error}")
        premium = check_token(settings, where, report, client=client, reachable=reachable)
    if sourced is None:
        report.warn(f"{where}: [presets]: not checked: no catalogue (none cached, MVSEP down)")
        return
    check_presets(settings, where, report, sourced=sourced, premium=premium)


def check_token(
    settings: Settings, where: str, report: Report, *, client: MvsepClient, reachable: bool
) -> bool | None:
    """One ``/api/app/user``: is the token accepted? Returns premium (None: unknown)."""
    from daemon.errors import ApiAuthError, MvsepWatchError
    from daemon.service import TOKEN_REFUSED

    if not settings.token():
        return None  # the config check said so already
    if not reachable:
        report.warn(f"{where}: [mvsep] api_token: not checked (MVSEP does not answer)")
        return None
    try:
        user = client.user()
    except ApiAuthError:
        report.error(f"{where}: [mvsep] api_token: {TOKEN_REFUSED}")
        return None
    except MvsepWatchError as exc:
        report.error(f"{where}: [mvsep] api_token: cannot be checked: {exc}")
        return None
    plan = "premium" if user.premium_enabled else "free"
    report.ok(f"token accepted ({plan} account, {user.premium_minutes:g} credits left)")
    return bool(user.premium_enabled)


def check_presets(
    settings: Settings,
    where: str,
    report: Report,
    *,
    sourced: SourcedCatalogue,
    premium: bool | None,
) -> None:
    from daemon.service import resolve_presets

    against = sourced.describe()
    try:
        resolve_presets(settings, sourced.catalogue, premium=premium, where=where)
    except ConfigError as exc:
        report.note(f"presets checked against {against}")
        for line in exc.problems:
            report.error(line)
        return
    text = f"{_plural(len(settings.presets), 'preset')} checked against {against}"
    if sourced.origin == ORIGIN_LIVE:
        report.ok(text)
    else:
        report.note(text)


# ---------------------------------------------------------------------- folders


def check_folders(settings: Settings, where: str, report: Report) -> None:
    before = len(report.lines)
    for i, inbox in enumerate(settings.inbox):
        check_inbox(inbox, f"{where}: [[inbox]] #{i + 1}", report)
    journal = settings.journal.path
    check_writable(journal.parent, f"{where}: [journal] path ({journal})", report)
    check_journal_marker(journal, f"{where}: [journal] path", report)
    if len(report.lines) == before:
        count = _plural(len(settings.inbox), "inbox")
        report.ok(f"folders of {count}, and the journal's, readable and writable")


def check_journal_marker(journal: Path, label: str, report: Report) -> None:
    """``run`` refuses to start while ``<journal>.gone`` is there (the journal was lost)."""
    from daemon.errors import JournalGoneError
    from daemon.journal.guard import refuse_if_marked

    try:
        refuse_if_marked(journal)
    except JournalGoneError as exc:
        report.error(f"{label}: " + " ".join(str(exc).split()))


def check_inbox(inbox: InboxSection, label: str, report: Report) -> None:
    path = inbox.path
    if not path.exists():
        report.warn(
            f"{label} path: inbox {inbox.display_name!r} folder {path} does not exist: the "
            f"daemon waits for it (an unmounted share?); create it: mkdir -p '{path}'"
        )
    elif not path.is_dir():
        report.error(f"{label} path: {path} is not a folder")
    elif not os.access(path, os.R_OK | os.X_OK):
        report.error(f"{label} path: {path} cannot be read by this user")
    elif not os.access(path, os.W_OK):
        report.error(
            f"{label} path: {path} is not writable by this user: finished and failed "
            "inputs cannot be moved out of it"
        )
    check_writable(inbox.output, f"{label} output", report)
    moved_to = [("failed_dir", inbox.failed_path)]
    if inbox.after_success == "archive":
        moved_to.insert(0, ("archive_dir", inbox.archive_path))
    for key, folder in moved_to:
        check_writable(folder, f"{label} {key}", report)
        if not same_filesystem(path, folder):
            report.warn(
                f"{label} {key}: {folder} is not on the inbox's filesystem: each input is "
                "copied there, then deleted, instead of renamed — put it on the same share"
            )


def nearest_existing(path: Path) -> Path | None:
    """``path`` or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def check_writable(folder: Path, label: str, report: Report) -> None:
    """A folder that exists must be a writable folder; one that does not must be creatable."""
    if folder.exists():
        if not folder.is_dir():
            report.error(f"{label}: {folder} is not a folder")
        elif not os.access(folder, os.W_OK | os.X_OK):
            report.error(f"{label}: {folder} is not writable by this user")
        return
    parent = nearest_existing(folder)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        report.error(f"{label}: {folder} does not exist and cannot be created here ({parent})")


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether folder ``b`` (or the nearest folder above it that exists: it will be made
    there) is on the device of ``a``; True when it cannot be told (``a`` is not there)."""
    there = nearest_existing(b)
    if there is None or not a.exists():
        return True
    try:
        return a.stat().st_dev == there.stat().st_dev
    except OSError:
        return True
