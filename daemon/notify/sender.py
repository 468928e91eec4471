"""Notification URLs through apprise (the optional ``[notify]`` extra:
``pip install 'mvsep-watch[notify]'``).

A URL may hold a secret (a bot token, a password), so the journal and the log name a URL by
its id (:func:`url_id`: a digest) and its scheme, never the URL itself; apprise's own error
lines are captured and the URL's parts masked before they become a row's ``last_error``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from daemon.notify.outbox import DeliveryError, GiveUp

NO_APPRISE = "apprise is not installed: pip install 'mvsep-watch[notify]' (or remove [notify] urls)"


def url_id(url: str) -> str:
    """The name of a URL in the journal: 16 hex digits of its sha256."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


def load_apprise() -> ModuleType:
    """apprise, imported with its plugins (one of which imports the deprecated ``imghdr``
    on Python 3.11/3.12: that warning is not ours to show). apprise's own log lines name
    the URLs (secrets and all): they are kept out of the daemon's log; what a failed send
    says is captured per send and masked (:meth:`AppriseSender.send`)."""
    logging.getLogger("apprise").propagate = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        apprise.Apprise().add("json://127.0.0.1/")  # loads the plugins now, warnings off
    return apprise


def url_problems(urls: Sequence[str], *, where: str) -> list[str]:
    """One line per ``[notify] urls`` entry apprise cannot use (the URL is not repeated:
    it may hold a secret); apprise missing is one line."""
    if not urls:
        return []
    try:
        apprise = load_apprise()
    except ImportError:
        return [f"{where}: [notify] urls: {NO_APPRISE}"]
    problems = []
    for i, url in enumerate(urls):
        if not apprise.Apprise().add(url):
            problems.append(
                f"{where}: [notify] urls #{i + 1}: apprise cannot use this {scheme_of(url)}:// "
                "URL — see https://github.com/caronc/apprise/wiki for its form"
            )
    return problems


def _masks(url: str) -> list[str]:
    parts = urlsplit(url)
    found = [url, parts.netloc, parts.path, parts.query, parts.username, parts.password]
    return sorted({p for p in found if p and len(p) > 3}, key=len, reverse=True)


class AppriseSender:
    """Sends a title and a body to one of the configured URLs, named by its id."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = {url_id(u): u for u in urls}
        self._apprise: Any = load_apprise() if urls else None

    def targets(self) -> list[str]:
        return list(self._urls)

    def scheme(self, target: str) -> str:
        url = self._urls.get(target)
        return scheme_of(url) if url is not None else "?"

    def send(self, target: str, title: str, body: str) -> None:
        """Raises :class:`DeliveryError` (apprise's reason, masked), or :class:`GiveUp`
        for a URL no longer in the config."""
        url = self._urls.get(target)
        if url is None or self._apprise is None:
            raise GiveUp(f"URL {target} is no longer in [notify] urls")
        apobj = self._apprise.Apprise()
        if not apobj.add(url):
            raise GiveUp(f"apprise cannot use this {scheme_of(url)}:// URL")
        capture = self._apprise.LogCapture(level=logging.WARNING, fmt="%(message)s")
        with capture as lines:
            ok = bool(apobj.notify(body=body, title=title))
        if not ok:
            text = " ".join(lines.getvalue().split()) or "apprise: the notification failed"
            for secret in _masks(url):
                text = text.replace(secret, "***")
            raise DeliveryError(f"{scheme_of(url)}://: {text}")
