"""Composition root: config → client → catalogue → journal → engine → watcher; signals.

:class:`Daemon` owns the running parts and their order of start and stop; ``run_service``
adds the signal contract used by systemd and launchd (SIGTERM/SIGINT: stop taking work,
leave jobs running at MVSEP, exit within 10 s; SIGHUP: ``Daemon.reload``, the config read
again and swapped, see :mod:`daemon.reload`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from daemon.catalogue import Catalogue, CatalogueCache
from daemon.config import InboxSection, Settings, load_settings
from daemon.engine import Engine, EngineSettings
from daemon.engine.progress import JournalProgress, chain_progress
from daemon.errors import (
    ApiAuthError,
    ApiError,
    ConfigError,
    MvsepWatchError,
    RetryLater,
)
from daemon.filing import DEFAULT_TEMPLATE, validate_template
from daemon.http import StatusServer, start_http
from daemon.jobs import JobRequest, SourceFile
from daemon.journal import ACCOUNT_NOTE, INBOX_NOTE, Journal
from daemon.logs import register_secret
from daemon.mvsep.client import MvsepClient
from daemon.notify.runner import Notifications
from daemon.notify.wiring import build_notifications
from daemon.pacing import Pacer, PollPolicy
from daemon.reload import ReloadPlan, plan_reload
from daemon.watcher import InboxWatcher, ReadyFile, WatchedInbox

log = structlog.get_logger(__name__)

ProgressHook = Callable[[int, str, Mapping[str, Any]], None]
Routes = tuple[dict[str, InboxSection], dict[str, JobRequest]]
"""Inbox name -> its section, preset name -> its request: what a found file is journaled with."""


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
        price_multiplier=resolved.price_multiplier,
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
        max_credits_per_day=settings.credits.max_credits_per_day,
        keep_credits_at_least=settings.credits.keep_credits_at_least,
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
        # inbox name -> section, preset -> request: one tuple, swapped whole by a reload
        self._routes: Routes = ({ib.display_name: ib for ib in settings.inbox}, {})
        self.client: MvsepClient | None = None
        self.journal: Journal | None = None
        self.engine: Engine | None = None
        self.watcher: InboxWatcher | None = None
        self.notifications: Notifications | None = None
        self.http: StatusServer | None = None

    def start(self) -> None:
        for i, inbox in enumerate(self.settings.inbox):
            self._check_template(i, inbox)
            self._make_output(i, inbox)
        self.journal = open_journal(self.settings.journal.path, where=self._label)
        self.notifications = build_notifications(
            self.journal, lambda: self.settings, where=self._label
        )
        self.notifications.start()  # before any job change: its outbox rows go with it
        self.client = make_client(self.settings)
        premium = premium_of(self.client)  # a refused token first: exit 2, one line
        self.journal.set_note(ACCOUNT_NOTE, None)  # a pause of an earlier run is over
        catalogue = load_catalogue(self.settings, self.client)
        requests = resolve_presets(self.settings, catalogue, premium=premium, where=self._label)
        self._routes = (self._routes[0], requests)
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
        self.http = start_http(self, where=self._label)  # [http] listen: status page, health
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
        if self.http is not None:
            self.http.stop(timeout_s=min(1.0, timeout_s / 10))
        if self.watcher is not None:
            self.watcher.stop(timeout_s=min(3.0, timeout_s / 3))
        if self.client is not None:
            self.client.interrupt()  # nothing new is sent; waits for the rate limit end now
        if self.engine is not None:
            # a worker still waiting for an answer after a few seconds is left behind (its
            # job resumes on restart): the rest of the 10 s is a margin, not a wait
            left_s = deadline - time.monotonic() - 0.5
            self.engine.stop(timeout_s=max(0.5, min(ENGINE_STOP_S, left_s)))
        if self.notifications is not None:
            self.notifications.stop(timeout_s=0.5)  # a hook still running runs again on restart
        if self.journal is not None:
            self.journal.close()
        if self.client is not None:
            self.client.close()
        log.info("daemon stopped")

    def reload(self, config_path: Path, *, env: Mapping[str, str] | None = None) -> bool:
        """SIGHUP: read and validate the whole config again (presets against the catalogue,
        as ``start`` does), then swap it (what a reload changes: :mod:`daemon.reload`). An
        invalid config is logged with its problems and the running one kept. The token is
        read again and the account checked with it. Returns whether the config was applied."""
        log.info("SIGHUP: reading the config again", config_file=str(config_path))
        try:
            new, _ = load_settings(config_path, env=env, require_token=True, require_inboxes=True)
            plan = plan_reload(self.settings, new)
            requests = self._requests_for(new, plan)
            self._prepare_inboxes(new, plan)
        except MvsepWatchError as exc:  # a ConfigError, or no catalogue to resolve against
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            log.error("config reload refused; the running config is kept",
                      config_file=str(config_path), problems=problems)  # fmt: skip
            return False
        self._swap(new, plan, requests)
        self._reload_token(new, changed=plan.token_changed)
        return True

    def _requests_for(self, new: Settings, plan: ReloadPlan) -> dict[str, JobRequest]:
        """The requests of the new presets: unchanged ones kept, new and changed ones
        resolved against the catalogue (premium checks skipped if MVSEP cannot say)."""
        names = plan.presets_to_resolve
        requests = {k: v for k, v in self._routes[1].items() if k in new.presets}
        if names and self.client is not None:
            catalogue = load_catalogue(self.settings, self.client)
            subset = new.model_copy(update={"presets": {n: new.presets[n] for n in names}})
            premium = self._premium_now()
            requests |= resolve_presets(subset, catalogue, premium=premium, where=self._label)
        return requests

    def _premium_now(self) -> bool | None:
        assert self.client is not None
        try:
            return self.client.user().premium_enabled
        except ApiError:
            return None

    def _prepare_inboxes(self, new: Settings, plan: ReloadPlan) -> None:
        """The checks ``start`` makes, for the inboxes added or changed: their template
        first (all of them), then a missing output folder is created."""
        touched = set(plan.inboxes_added) | {c.name for c in plan.inboxes_changed}
        chosen = [(i, ib) for i, ib in enumerate(new.inbox) if ib.display_name in touched]
        for i, inbox in chosen:
            self._check_template(i, inbox)
        for i, inbox in chosen:
            self._make_output(i, inbox)

    def _swap(self, new: Settings, plan: ReloadPlan, requests: dict[str, JobRequest]) -> None:
        """Files found from now on use the new inboxes and presets; journaled jobs keep what
        they were journaled with. Keys that need a restart keep their running value."""
        mvsep = self.settings.mvsep.model_copy(
            update={"api_token": new.mvsep.api_token, "api_token_file": new.mvsep.api_token_file}
        )
        update = {"inbox": new.inbox, "presets": new.presets, "mvsep": mvsep}
        self.settings = self.settings.model_copy(update=update)
        sections = {ib.display_name: ib for ib in new.inbox}
        self._routes = (sections, requests)
        if self.watcher is not None:
            watch = plan.inboxes_added + plan.rewatched
            applied = self.watcher.update_inboxes(
                add=[watched_inbox(sections[name]) for name in watch],
                remove=plan.inboxes_removed + plan.rewatched,
            )
            if not applied:
                log.warning("the watcher is busy (a long scan?): it applies the inbox changes next")
        if plan.applies_anything:
            log.info("config reloaded", **plan.summary())
        else:
            log.info("config reloaded: no inbox or preset changed")
        if plan.needs_restart:
            log.warning("config reloaded; needs a restart: " + ", ".join(plan.needs_restart),
                        needs_restart=list(plan.needs_restart))  # fmt: skip

    def _reload_token(self, new: Settings, *, changed: bool) -> None:
        """The token of the new config (env, token file, config file) goes to the client;
        the account is checked with it now: submits paused by a refused token go on."""
        token = new.token()
        if self.client is None or self.engine is None or not token:
            return
        register_secret(token)
        self.client.set_token(token)
        self.engine.recheck_account()
        log.info("API token reloaded; the account is checked now", changed=changed)

    def source_for(self, ready: ReadyFile) -> SourceFile:
        sections, requests = self._routes
        inbox = sections[ready.inbox]
        preset = preset_for(inbox, ready.relative_path, requests)
        return SourceFile(
            path=ready.path,
            inbox=ready.inbox,
            relative_path=ready.relative_path,
            preset=preset,
            request=requests[preset],
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
        if ready.inbox not in self._routes[0]:  # removed by a reload while it was handed on
            log.info("file not taken: its inbox left the config", file=str(ready.path))
            return
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


ENGINE_STOP_S = 4.0
"""How long a stop waits for busy workers (journal writes finish in far less)."""
