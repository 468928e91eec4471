"""Composition root: config → client → catalogue → journal → engine → watcher; signals.

:class:`Daemon` owns the running parts and their order of start and stop; ``run_service``
adds the signal contract used by systemd and launchd (SIGTERM/SIGINT: stop taking work,
leave jobs running at MVSEP, exit within 10 s).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

import structlog

from daemon.catalogue import Catalogue, CatalogueCache
from daemon.config import InboxSection, Settings, load_settings
from daemon.engine import Engine, EngineSettings
from daemon.engine.progress import JournalProgress, chain_progress
from daemon.engine.scheduler import ENGINE_THREAD_PREFIX
from daemon.errors import ApiAuthError, ConfigError, JournalGoneError, RetryLater
from daemon.filing import DEFAULT_TEMPLATE, validate_template
from daemon.jobs import JobRequest, SourceFile
from daemon.journal import ACCOUNT_NOTE, INBOX_NOTE, Journal
from daemon.logs import register_secret
from daemon.mvsep.client import MvsepClient
from daemon.pacing import Pacer, PollPolicy
from daemon.watcher import InboxWatcher, ReadyFile, WatchedInbox

log = structlog.get_logger(__name__)

ProgressHook = Callable[[int, str, Mapping[str, Any]], None]


def make_client(settings: Settings) -> MvsepClient:
    """The one API client of a process, behind one shared pacer."""
    token = settings.token() or ""
    register_secret(token)
    return MvsepClient(
        base_url=settings.mvsep.base_url,
        api_token=token,
        connect_timeout_s=settings.mvsep.connect_timeout_s,
        read_timeout_s=settings.mvsep.read_timeout_s,
        upload_timeout_s=settings.mvsep.upload_timeout_s,
        gate=Pacer(limit=settings.mvsep.rate_limit_per_minute),
    )


def load_catalogue(settings: Settings, client: MvsepClient) -> Catalogue:
    cache = CatalogueCache(
        settings.catalogue.cache_path,
        fetch=client.algorithms,
        max_age_s=settings.catalogue.max_age_s,
    )
    return cache.load()


TOKEN_REFUSED = (
    "MVSEP refused the API token: set a valid token in $MVSEP_API_TOKEN, "
    "or [mvsep] api_token_file / api_token in the config file (see mvsep.com, your profile)"
)
"""The one line a refused token exits 2 with; it never shows the token."""


def open_journal(path: Path, *, where: str) -> Journal:
    """The journal; a path that cannot be a file (a folder in the way, no permission) is a
    config error (exit 2). Another process holding it stays a ``JournalError`` (exit 1)."""
    try:
        return Journal(path)
    except OSError as exc:
        raise ConfigError(
            f"{where}: [journal] path: cannot open {path}: {exc.strerror or exc}; "
            "choose a writable place"
        ) from None


def premium_of(client: MvsepClient) -> bool | None:
    """Whether the account is premium; ``None`` when MVSEP cannot be asked right now (the
    engine keeps asking). A refused token is a config error (exit 2), not a retry."""
    try:
        return client.user().premium_enabled
    except ApiAuthError:
        raise ConfigError(TOKEN_REFUSED) from None
    except RetryLater as exc:
        log.warning("cannot read the account from MVSEP; plan checks skipped", error=str(exc))
        return None


def resolve_presets(
    settings: Settings, catalogue: Catalogue, *, premium: bool | None, where: str
) -> dict[str, JobRequest]:
    """Every [presets.NAME] resolved against the live catalogue; all problems at once."""
    requests: dict[str, JobRequest] = {}
    problems: list[str] = []
    for name, preset in settings.presets.items():
        try:
            resolved = catalogue.resolve(
                sep_type=preset.sep_type,
                options=preset.options(),
                output_format=preset.output_format,
                premium=premium,
                where=f"{where} [presets.{name}]",
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        requests[name] = to_request(resolved)
    if problems:
        raise ConfigError(problems)
    return requests


def to_request(resolved: Any) -> JobRequest:
    return JobRequest(
        sep_type=resolved.sep_type,
        options=dict(resolved.options),
        output_format=resolved.output_format.code,
        algorithm_name=resolved.algorithm_name,
        price_coefficient=resolved.price_coefficient,
    )


def engine_settings(settings: Settings) -> EngineSettings:
    eng = settings.engine
    return EngineSettings(
        max_parallel_jobs=settings.mvsep.max_parallel_jobs,
        account_recheck_s=settings.mvsep.account_recheck_s,
        free_max_file_mb=settings.mvsep.free_max_file_mb,
        free_max_duration_min=settings.mvsep.free_max_duration_min,
        premium_max_file_mb=settings.mvsep.premium_max_file_mb,
        premium_max_duration_min=settings.mvsep.premium_max_duration_min,
        max_transfers=eng.max_transfers,
        retry_base_s=eng.retry_base_s,
        retry_cap_s=eng.retry_cap_s,
        retry_deadline_s=eng.retry_deadline_s,
        reconcile_grace_s=eng.reconcile_grace_s,
        resubmit_expired=eng.resubmit_expired,
        dedupe_same_content=eng.dedupe_same_content,
        on_cancel_processing=eng.on_cancel_processing,
        cut_off_wait_s=eng.cut_off_wait_s,
        missing_inbox_recheck_s=eng.missing_inbox_recheck_s,
    )


def poll_policy(settings: Settings) -> PollPolicy:
    eng = settings.engine
    return PollPolicy(
        waiting_unknown_s=eng.poll_unknown_s,
        processing_unknown_s=eng.poll_unknown_s,
        distributing_unknown_s=min(eng.poll_unknown_s, 10.0),
        max_interval_s=eng.poll_max_s,
    )


def watched_inbox(inbox: InboxSection) -> WatchedInbox:
    extensions = (
        frozenset(e.lower().lstrip(".") for e in inbox.extensions) if inbox.extensions else None
    )
    extra: dict[str, Any] = {"extensions": extensions} if extensions else {}
    return WatchedInbox(
        name=inbox.display_name,
        path=inbox.path,
        poll=inbox.poll,
        poll_interval_s=inbox.poll_interval_s,
        settle_s=inbox.settle_s,
        recursive=inbox.recursive,
        follow_symlinks=inbox.follow_symlinks,
        excluded_dirs=(inbox.failed_path, inbox.archive_path, inbox.output),
        **extra,
    )


class Daemon:
    """The running daemon. ``start()`` raises ConfigError for presets MVSEP does not know."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_label: str = "config",
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.settings = settings
        self._label = config_label
        self._on_progress = on_progress
        self._inboxes = {ib.display_name: ib for ib in settings.inbox}
        self._requests: dict[str, JobRequest] = {}
        self.client: MvsepClient | None = None
        self.journal: Journal | None = None
        self.engine: Engine | None = None
        self.watcher: InboxWatcher | None = None

    def start(self) -> None:
        for i, inbox in enumerate(self.settings.inbox):
            self._check_template(i, inbox)
            self._make_output(i, inbox)
        self.journal = open_journal(self.settings.journal.path, where=self._label)
        self.client = make_client(self.settings)
        premium = premium_of(self.client)  # a refused token first: exit 2, one line
        self.journal.set_note(ACCOUNT_NOTE, None)  # a pause of an earlier run is over
        catalogue = load_catalogue(self.settings, self.client)
        self._requests = resolve_presets(
            self.settings, catalogue, premium=premium, where=self._label
        )
        self.engine = Engine(
            journal=self.journal,
            client=self.client,
            settings=engine_settings(self.settings),
            poll_policy=poll_policy(self.settings),
            on_progress=chain_progress(JournalProgress(self.journal), self._on_progress),
            premium=premium,
        )
        self.engine.start()
        self.watcher = InboxWatcher(
            inboxes=[watched_inbox(ib) for ib in self.settings.inbox],
            on_ready=self._on_ready,
            on_removed=self._on_removed,
            rescan_interval_s=self.settings.watch.rescan_interval_s,
            on_health=functools.partial(note_inbox, self.journal),  # for `status`
        )
        self.watcher.start()
        log.info(
            "daemon started",
            inboxes=[str(ib.path) for ib in self.settings.inbox],
            journal=str(self.settings.journal.path),
            slots=self.engine.slots,
        )

    def _make_output(self, index: int, inbox: InboxSection) -> None:
        """Create a missing output folder now: once running, a missing one is read as an
        unmounted share (jobs wait for it), never silently made again."""
        if inbox.output.is_dir():
            return
        try:
            inbox.output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{self._label}: [[inbox]] #{index + 1} output: cannot create {inbox.output}: "
                f"{exc.strerror or exc}"
            ) from None
        log.info("output folder created", path=str(inbox.output))

    def _check_template(self, index: int, inbox: InboxSection) -> None:
        try:
            validate_template(inbox.output_template or DEFAULT_TEMPLATE)
        except ValueError as exc:
            raise ConfigError(
                f"{self._label}: [[inbox]] #{index + 1} output_template: {exc}"
            ) from None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop watching, stop the engine (jobs stay at MVSEP), close the journal: all
        within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self.watcher is not None:
            self.watcher.stop(timeout_s=min(3.0, timeout_s / 3))
        if self.client is not None:
            self.client.interrupt()  # nothing new is sent; waits for the rate limit end now
        if self.engine is not None:
            # a worker still waiting for an answer after a few seconds is left behind (its
            # job resumes on restart): the rest of the 10 s is a margin, not a wait
            left_s = deadline - time.monotonic() - 0.5
            self.engine.stop(timeout_s=max(0.5, min(ENGINE_STOP_S, left_s)))
        if self.journal is not None:
            self.journal.close()
        if self.client is not None:
            self.client.close()
        log.info("daemon stopped")

    def reload_token(self, config_path: Path) -> None:
        """SIGHUP: read the API token again (env, token file, config file) and check the
        account with it now: submits paused by a refused token go on if it works. Only the
        token is reloaded; other settings need a restart."""
        try:
            token = load_settings(config_path, require_token=True)[0].token()
        except ConfigError as exc:
            log.warning("SIGHUP: the config cannot be read; the token is unchanged", error=str(exc))
            return
        if self.client is None or self.engine is None or not token:
            return
        register_secret(token)
        self.client.set_token(token)
        self.engine.recheck_account()
        log.info("SIGHUP: API token reloaded; the account is checked now")

    def source_for(self, ready: ReadyFile) -> SourceFile:
        inbox = self._inboxes[ready.inbox]
        preset = preset_for(inbox, ready.relative_path, self._requests)
        return SourceFile(
            path=ready.path,
            inbox=ready.inbox,
            relative_path=ready.relative_path,
            preset=preset,
            request=self._requests[preset],
            output_dir=inbox.output,
            output_template=inbox.output_template or DEFAULT_TEMPLATE,
            failed_dir=inbox.failed_path,
            after_success=inbox.after_success,
            archive_dir=inbox.archive_path,
            on_collision=inbox.on_collision,
            sidecar=inbox.sidecar,
        )

    def _on_ready(self, ready: ReadyFile) -> None:
        assert self.engine is not None
        try:
            self.engine.submit_file(self.source_for(ready))
        except FileNotFoundError:
            log.info("file vanished before it was journaled", file=str(ready.path))
        # anything else (the state disk full...) goes to the watcher: the next rescan retries

    def _on_removed(self, path: Path) -> None:
        if self.engine is not None:
            self.engine.cancel_path(path, "the file was removed from its inbox")


def note_inbox(journal: Journal, name: str, health: str) -> None:
    journal.set_note(INBOX_NOTE + name, health)


def preset_for(inbox: InboxSection, relative_path: str, known: dict[str, JobRequest]) -> str:
    """The inbox's preset, or with ``subfolders_as_presets`` the first folder's name."""
    parts = PurePosixPath(relative_path).parts
    if inbox.subfolders_as_presets and len(parts) > 1 and parts[0] in known:
        return parts[0]
    return inbox.preset


def run_service(settings: Settings, *, config_path: Path) -> int:
    """`mvsep-watch run`: start, wait for SIGTERM/SIGINT, stop within 10 s."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    daemon = Daemon(settings, config_label=str(config_path))
    reload = threading.Event()
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda s, f: reload.set())
    try:
        daemon.start()
        while not stop.wait(0.2):
            if daemon.journal is not None:
                daemon.journal.check_intact()
            if reload.is_set():
                reload.clear()
                daemon.reload_token(config_path)
    except JournalGoneError as exc:  # a person must look: no restart onto an empty journal
        log.error("journal deleted or replaced; stopping", error=str(exc))
        return exc.exit_code
    finally:
        daemon.stop(timeout_s=STOP_TIMEOUT_S - 1.0)
    leave_without_busy_workers()
    return 0


STOP_TIMEOUT_S = 10.0
"""SIGTERM to exit at most this long (the service units allow 20 s before SIGKILL)."""

ENGINE_STOP_S = 4.0
"""How long a stop waits for busy workers (journal writes finish in far less)."""


def leave_without_busy_workers(grace_s: float = 0.5) -> None:
    """End the process now if worker threads are still busy after the engine stopped.

    A worker can be inside a request already on the wire (an upload, a slow answer) or a
    retry's back-off; Python's exit would wait for it, past the 10 s promised. Its job is
    safe: every state change is in the journal (closed by now), a create whose answer never
    came is reconciled through the history, a download resumes from its ``.part``. So the
    process leaves without it, exit code 0.
    """
    deadline = time.monotonic() + grace_s
    busy = [t for t in threading.enumerate() if _holds_exit(t)]
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
    names = [t.name for t in busy if t.is_alive()]
    if not names:
        return
    log.warning("leaving busy worker threads behind; their jobs resume on restart", threads=names)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _holds_exit(thread: threading.Thread) -> bool:
    """Whether Python's exit would wait for ``thread``: a non-daemon thread, or a worker of
    the engine's pool. The pool's workers are started by the (daemon) scheduler thread and
    so are daemon threads too, yet ``concurrent.futures`` joins them at exit all the same: a
    worker waiting for a create's answer held the exit for the whole read timeout."""
    if thread is threading.main_thread() or not thread.is_alive():
        return False
    return not thread.daemon or thread.name.startswith(ENGINE_THREAD_PREFIX)
