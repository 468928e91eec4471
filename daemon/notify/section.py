"""The ``[notify]`` section: notification URLs, what they are sent on, the hooks' defaults.

``daemon.config`` reads it; it imports nothing of the daemon so the config stays first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Topic = Literal["done", "failed", "account_paused", "daily_summary"]
"""What a notification is about: a job filed, a job failed, submits paused (MVSEP refused
the account), the daily summary."""
TOPICS: tuple[str, ...] = ("done", "failed", "account_paused", "daily_summary")
DEFAULT_ON: tuple[Topic, ...] = ("failed", "account_paused")
DEFAULT_SUMMARY_HOUR = 9
DEFAULT_HOOK_TIMEOUT_S = 60.0


class NotifySection(BaseModel):
    """``[notify]``: ``urls`` (apprise URLs: ``ntfy://``, ``discord://``, ``tgram://``,
    ``mailto://``...), ``on`` (the topics sent to them), ``summary_hour`` (local hour of the
    daily summary, when ``on`` has ``daily_summary``), ``hook_timeout_s``, and the default
    ``on_done`` / ``on_failed`` hooks of every inbox that sets none itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(default_factory=list)
    on: list[Topic] = Field(default_factory=lambda: list(DEFAULT_ON))
    summary_hour: int = Field(default=DEFAULT_SUMMARY_HOUR, ge=0, le=23)
    hook_timeout_s: float = Field(default=DEFAULT_HOOK_TIMEOUT_S, gt=0)
    on_done: list[str] | None = None
    on_failed: list[str] | None = None
