"""PURE: who may see the pages and who may press a button.

* **Host.** On loopback, a request must name a loopback host (or the listen address) in its
  ``Host`` header: a web page elsewhere cannot read the status through DNS rebinding.
* **Token** (listening beyond loopback only): ``Authorization: Bearer TOKEN``, or the
  session cookie ``/login`` sets. The cookie holds an HMAC of the token, never the token.
* **Cross-site requests.** A POST must come from this server's own page: its ``Origin`` (or,
  without one, its ``Referer``) names the same host and port as ``Host``, and its form
  carries the per-process CSRF token of the page's hidden field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from daemon.config_http import is_loopback

COOKIE = "mvsep_watch_session"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same_text(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, useless to learn the token from."""
    return hmac.new(token.encode(), b"mvsep-watch http session", hashlib.sha256).hexdigest()


def host_of(host_header: str | None) -> str:
    """``"127.0.0.1:8787"`` -> ``"127.0.0.1"``; ``"[::1]:8787"`` -> ``"::1"``."""
    text = (host_header or "").strip()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def host_allowed(host_header: str | None, listen_host: str) -> bool:
    """On loopback: only a loopback name, or the address it listens on."""
    host = host_of(host_header).lower()
    return bool(host) and (is_loopback(host) or host == listen_host.lower())


def cookie_of(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return None if morsel is None else morsel.value


def authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """The bearer token or the session cookie (with no token configured: nobody)."""
    if not token:
        return False
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and same_text(given.strip(), token):
        return True
    return same_text(cookie_of(headers.get("cookie")), session_value(token))


def same_origin(headers: Mapping[str, str]) -> bool:
    """The POST's ``Origin`` (else ``Referer``) names the host and port of ``Host``."""
    host = headers.get("host", "").strip().lower()
    source = headers.get("origin") or headers.get("referer")
    if not host or not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == host
