"""From the config to a :class:`~daemon.notify.runner.Notifications` (used by ``service.py``)."""

from __future__ import annotations

from collections.abc import Callable

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.journal import Journal
from daemon.notify.messages import HOOK_OF_TOPIC
from daemon.notify.runner import Notifications
from daemon.notify.sender import url_problems


def inbox_hooks(settings: Settings, inbox: str) -> dict[str, list[str]]:
    """topic -> argv of the inbox's hooks: its own ``on_done``/``on_failed``, else
    ``[notify]``'s; an empty list (either place) is no hook."""
    section = next((ib for ib in settings.inbox if ib.display_name == inbox), None)
    hooks: dict[str, list[str]] = {}
    for topic, key in HOOK_OF_TOPIC.items():
        argv = getattr(section, key) if section is not None else None
        if argv is None:
            argv = getattr(settings.notify, key)
        if argv:
            hooks[topic] = list(argv)
    return hooks


def build_notifications(
    journal: Journal, settings_now: Callable[[], Settings], *, where: str
) -> Notifications:
    """The notifier of a daemon; hooks are looked up in the settings of the moment (a
    reload's inboxes count), ``[notify]`` is read once. A URL apprise cannot use, or
    apprise missing, is a ConfigError naming the key."""
    section = settings_now().notify
    problems = url_problems(section.urls, where=where)
    if problems:
        raise ConfigError(problems)
    return Notifications(
        journal=journal,
        hooks_for=lambda inbox: inbox_hooks(settings_now(), inbox),
        urls=section.urls,
        topics=section.on,
        summary_hour=section.summary_hour,
        hook_timeout_s=section.hook_timeout_s,
    )
