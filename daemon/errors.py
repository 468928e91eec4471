"""The whole exception tree of mvsep-watch.

Retry code needs one ``except``: everything that may work later derives from
:class:`RetryLater`, everything that never will from :class:`WillNeverWork`. A
``create`` whose answer was lost is neither: it may exist at MVSEP, so it is
:class:`OutcomeUnknown` and must be reconciled, never re-sent blindly.

::

    MvsepWatchError
    ├── ConfigError                  bad config file / env / arguments (exit code 2)
    ├── JournalError                 the SQLite journal cannot be used
    │   ├── JournalLockedError       another daemon holds the journal
    │   ├── JournalVersionError      journal written by a newer mvsep-watch
    │   └── JournalGoneError         the journal or its lock was deleted/replaced while running
    │                                (exit code 2: a person must look)
    ├── IllegalTransition            a job event that its state does not allow (a bug)
    ├── Stopping                     the process is stopping: a step was abandoned (nothing is
    │                                lost: the journal says where the job resumes)
    └── ApiError                     anything the MVSEP API (or the way to it) did wrong
        ├── RetryLater               may work if tried again later
        │   ├── ApiTimeout           connect/read/write timed out (nothing sent, or idempotent call)
        │   ├── ApiConnectionError   connection refused/reset/dropped
        │   ├── ApiServerError       HTTP 5xx
        │   ├── ApiRateLimited       HTTP 429; ``retry_after_s`` from Retry-After
        │   └── ApiSlotsFull         the account's parallel-job limit is reached
        ├── WillNeverWork            the same request will fail the same way
        │   ├── ApiAuthError         HTTP 401 / invalid api_token
        │   ├── ApiRejected          HTTP 400 or ``success: false`` with a message
        │   └── ApiNotFound          unknown or expired hash (``status: not_found``)
        └── OutcomeUnknown           a create was sent but its answer was lost

Messages never contain the API token: callers pass redacted text, and the
logging processor redacts again as a last line of defence.
"""

from __future__ import annotations


class MvsepWatchError(Exception):
    """Base of every error raised on purpose by mvsep-watch."""


class ConfigError(MvsepWatchError):
    """The configuration cannot be used. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class JournalError(MvsepWatchError):
    """The journal cannot be opened or written."""


class JournalLockedError(JournalError):
    """Another process holds the journal's lock."""


class JournalVersionError(JournalError):
    """The journal's schema is newer than this program understands."""


class JournalGoneError(JournalError):
    """The open journal (or its lock file) was deleted or replaced while the daemon ran.

    The daemon stops with ``exit_code`` (2: the systemd unit does not restart it): going on,
    or restarting onto an empty journal, would lose the history and could pay twice."""

    exit_code = 2


class IllegalTransition(MvsepWatchError):
    """A job event arrived in a state that does not allow it."""


class Stopping(MvsepWatchError):
    """The process is stopping: a request was not sent, or a transfer was cut short.

    Not a failure of the job: its journaled state is where it resumes on the next start.
    """


class ApiError(MvsepWatchError):
    """Base of MVSEP API failures.

    ``status_code`` is the HTTP status when there was a response; ``endpoint``
    names the call (``create``, ``get``, ...).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, endpoint: str | None = None
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        super().__init__(message)


class RetryLater(ApiError):
    """Transient: the same call may succeed later."""


class ApiTimeout(RetryLater):
    """The request timed out."""


class ApiConnectionError(RetryLater):
    """The connection failed or was dropped."""


class ApiServerError(RetryLater):
    """The server answered 5xx."""


class ApiRateLimited(RetryLater):
    """HTTP 429. ``retry_after_s`` is the server's Retry-After, when given."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status_code: int | None = 429,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, endpoint=endpoint)
        self.retry_after_s = retry_after_s


class ApiSlotsFull(RetryLater):
    """The account already runs as many jobs as its plan allows."""


class WillNeverWork(ApiError):
    """Permanent: retrying the same request cannot help."""


class ApiAuthError(WillNeverWork):
    """The API token is missing, unknown or invalid."""


class ApiRejected(WillNeverWork):
    """The request was refused (HTTP 400 or ``success: false``)."""


class ApiNotFound(WillNeverWork):
    """The job hash is unknown or its results expired."""


class OutcomeUnknown(ApiError):
    """A ``create`` was (maybe) received but its answer was lost. Reconcile; never re-send."""
