"""How many jobs may hold an MVSEP slot at once: the account's plan, what the server does,
and ``max_parallel_jobs`` as an upper bound.

* ``[mvsep] max_parallel_jobs`` set: that many, never more (the account is not consulted).
* Unset: the plan's count from ``/api/app/user`` (premium → ``premium_slots``, free →
  ``free_slots``). Until the account has been read (MVSEP unreachable at start) the engine
  runs at ``free_slots`` and keeps asking with capped backoff (nothing is journaled); once it
  answers, the count follows. It is read again every ``account_recheck_s`` (plans change).
* MVSEP refusing a create because the account's parallel jobs are running
  (:class:`~daemon.errors.ApiSlotsFull`, ``over_limit="reject"``) teaches the real limit: the
  jobs holding a slot at that moment, less the refused one. No more creates are sent until a
  slot frees. The learnt limit is forgotten at the next account read (or, with
  ``max_parallel_jobs`` set, ``account_recheck_s`` after it was learnt), so a plan that grew
  or a slot another client held for a while is used again. A server that queues past its
  limit (``over_limit="queue"``) needs nothing: the jobs wait at MVSEP.
* An account-level refusal (:func:`account_problem`: the token refused, the account
  disabled, out of credits) pauses every submit (:attr:`paused`): one WARNING line,
  ``on_pause(reason)`` (the service journals it for ``status``), the account read again with
  capped backoff (``retry_base_s`` to ``retry_cap_s``, whatever ``max_parallel_jobs`` says),
  and submits go on by themselves once it answers (``on_pause(None)``); :meth:`recheck` asks
  at once (SIGHUP with a new token).

Thread-safe; the clock is passed in (``now``: monotonic seconds).
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from daemon.engine.retry import backoff_delay_s
from daemon.engine.settings import EngineSettings
from daemon.errors import ApiAuthError, ApiRejected, Stopping
from daemon.mvsep.models import UserInfo

__all__ = ["Slots", "account_problem"]

log = structlog.get_logger("daemon.engine")

_ACCOUNT_WORDS = re.compile(
    r"disabled|banned|blocked|suspended|insufficient|out of credits|"
    r"not enough (premium )?(minutes|credits)",
    re.IGNORECASE,
)


def account_problem(exc: BaseException) -> str | None:
    """Why ``exc`` is the account's problem rather than the job's (no job can be sent until
    it is solved), or None. The client's error texts never hold the token."""
    if isinstance(exc, ApiAuthError):
        return f"MVSEP refused the API token: {exc}"
    if isinstance(exc, ApiRejected) and _ACCOUNT_WORDS.search(str(exc)):
        return f"MVSEP refused the account: {exc}"
    return None


@dataclass
class _Account:
    plan_slots: int | None = None  # None: not read yet
    next_read_at: float = 0.0
    failures: int = 0


class Slots:
    """The slot count in force (:attr:`limit`) and when to read the account next."""

    def __init__(
        self,
        settings: EngineSettings,
        read_account: Callable[[], UserInfo],
        *,
        rng: random.Random,
        on_pause: Callable[[str | None], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_pause = on_pause
        self._paused: str | None = None
        self._pause_looks = 0
        self.premium: bool | None = None
        """The account's plan as last read (None: not read yet); the plan caps follow it."""
        self.credits_left: float | None = None
        """The account's ``premium_minutes`` as last read (None: not read yet)."""
        self.credits_read_at: float | None = None
        """When (monotonic) the read that saw :attr:`credits_left` began."""
        self._credits_wanted = False
        self._read_account = read_account
        self._rng = rng
        self._lock = threading.Lock()
        self._account = _Account()
        self._learnt: int | None = None
        self._learnt_at = 0.0

    @property
    def configured(self) -> int | None:
        cap = self._settings.max_parallel_jobs
        return None if cap is None else max(1, cap)

    @property
    def known(self) -> bool:
        """Whether the count rests on something real (the setting or the account)."""
        return self.configured is not None or self._account.plan_slots is not None

    @property
    def limit(self) -> int:
        """Jobs that may hold a slot now."""
        with self._lock:
            base = self.configured or self._account.plan_slots or self._settings.free_slots
            return base if self._learnt is None else max(1, min(base, self._learnt))

    @property
    def paused(self) -> str | None:
        """Why every submit is paused (the account refused), or None."""
        return self._paused

    def pause(self, reason: str, now: float) -> None:
        """The account refused a call: no submit until a read of the account works."""
        with self._lock:
            first = self._paused is None
            self._paused = reason
            self._pause_looks += 1
            delay = self._pause_delay_s()
            self._account.next_read_at = now + delay
        if first:
            log.warning(
                "MVSEP account refused: every submit paused, files stay where they are; "
                "the account is checked again and submits go on by themselves",
                reason=reason,
                retry_in_s=round(delay, 1),
            )
            self._tell(reason)

    def recheck(self) -> None:
        """Read the account at the next pass (a new token was given)."""
        with self._lock:
            self._account.next_read_at = 0.0
            self._pause_looks = 0

    def _pause_delay_s(self) -> float:
        settings = self._settings
        return backoff_delay_s(
            self._pause_looks,
            base_s=settings.retry_base_s,
            cap_s=max(settings.retry_base_s, settings.retry_cap_s),
            rng=self._rng,
        )

    def _tell(self, reason: str | None) -> None:
        if self._on_pause is None:
            return
        try:
            self._on_pause(reason)
        except Exception as exc:  # the banner is a courtesy: submits pause all the same
            log.warning("could not journal the account pause", error=str(exc))

    def read_due_in(self, now: float) -> float | None:
        """Seconds until the account should be read (0 or less: now); None: never."""
        with self._lock:
            if self.configured is None or self._paused is not None or self._credits_wanted:
                return self._account.next_read_at - now
            if self._learnt is None:
                return None
            return self._learnt_at + self._settings.account_recheck_s - now

    def read(self, now: float) -> None:
        """Read the account (one ``/api/app/user``); never raises but :class:`Stopping`.
        With ``max_parallel_jobs`` set, only forgets a learnt limit."""
        if self.configured is not None and self._paused is None and not self._credits_wanted:
            with self._lock:
                self._learnt = None
            log.info("parallel limit learnt from MVSEP forgotten", slots=self.limit)
            return
        try:
            user = self._read_account()
        except Stopping:
            raise
        except Exception as exc:  # an API error, or a bug: asked again after a backoff
            problem = account_problem(exc)
            if problem is not None:
                self.pause(problem, now)
            elif self._paused is not None:  # MVSEP not answering: the pause stays, looked at again
                self.pause(self._paused, now)
            else:
                self._read_failed(exc, now)
            return
        self.premium, self.credits_left = user.premium_enabled, user.premium_minutes
        self.credits_read_at = now
        self._credits_wanted = False
        if self._paused is not None:
            with self._lock:
                self._paused = None
                self._pause_looks = 0
            log.info("MVSEP account works again: submits go on", premium=user.premium_enabled)
            self._tell(None)
        slots = self._settings.premium_slots if user.premium_enabled else self._settings.free_slots
        with self._lock:
            before = self._account.plan_slots
            self._account = _Account(
                plan_slots=slots, next_read_at=now + self._settings.account_recheck_s
            )
            self._learnt = None
        if before != slots:
            log.info("account read", premium=user.premium_enabled, slots=self.limit)

    def want_credits(self, within_s: float, now: float) -> None:
        """A job is held for the credits left (the credit guard): read the account within
        ``within_s`` (even with ``max_parallel_jobs`` set), so credits bought are seen."""
        with self._lock:
            self._credits_wanted = True
            self._account.next_read_at = min(self._account.next_read_at, now + within_s)

    def _read_failed(self, exc: Exception, now: float) -> None:
        settings = self._settings
        with self._lock:
            account = self._account
            account.failures += 1
            delay = backoff_delay_s(
                account.failures,
                base_s=settings.retry_base_s,
                cap_s=max(settings.retry_base_s, settings.retry_cap_s),
                rng=self._rng,
            )
            account.next_read_at = now + delay
            known = account.plan_slots is not None
            first = account.failures == 1
        if first:  # once per streak; the count in force stays until MVSEP answers
            log.warning(
                "could not read the account; asking again",
                error=str(exc),
                slots=self.limit,
                known=known,
                retry_in_s=round(delay, 1),
            )

    def refused(self, others: int, now: float) -> None:
        """MVSEP refused a create as over the account's parallel limit while ``others``
        jobs (the refused one not counted) held a slot: the limit is at most that. Our count
        can be stale (a job done at MVSEP but not yet polled still holds its slot here), so
        each refusal is an upper bound and the lowest one seen stands."""
        learnt = max(1, others)
        with self._lock:
            if self._learnt is not None:
                learnt = min(learnt, self._learnt)
            changed = self._learnt != learnt
            self._learnt = learnt
            self._learnt_at = now
        if changed:
            log.warning(
                "MVSEP refused a job over the account's parallel limit; sending fewer",
                slots=self.limit,
            )
