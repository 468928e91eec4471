"""Who may see the status pages and press Retry (issue 11, "HTTP"): the config rules, the
Host check on loopback, the token beyond it, the cross-site guard of the POST.

Real parts: the config loader on real files, a Daemon against the emulator with its
server on 127.0.0.1, plain httpx. Listening beyond loopback is not allowed on this machine,
so the remote rule runs the same app with a remote ``[http]`` section (a documentation
address, never bound) on a loopback socket: what it checks is the app's rule, not the bind.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_harness import wait_until
from http_harness import base_url, daemons, get, http_config, jobs, start
from pydantic import SecretStr

from daemon.cli import main
from daemon.config import load_settings
from daemon.config_http import ENV_HTTP_TOKEN, HttpSection
from daemon.emulator.faults import Fault
from daemon.errors import ConfigError
from daemon.http import StatusApp, StatusServer
from daemon.jobs import JobState
from daemon.journal import Journal
from daemon.reload import plan_reload
from daemon.service import Daemon

__all__ = ["daemons"]  # the fixture, imported
LOCAL = {"listen": "127.0.0.1:0"}
HTTP_TOKEN = "http-token-zzzz-9999"


def problems(config: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env or {})
    return "\n".join(caught.value.problems)


def test_off_by_default_and_loopback_without_a_token(tmp_path: Path) -> None:
    plain, _ = load_settings(http_config(tmp_path, "http://127.0.0.1:9", {}), env={})
    assert plain.http.address is None  # listen = "": no server
    for listen, host in (("127.0.0.1:8787", "127.0.0.1"), ("[::1]:8787", "::1")):
        settings, _ = load_settings(http_config(tmp_path, "http://127.0.0.1:9", {"listen": listen}))
        assert settings.http.address == (host, 8787) and not settings.http.remote


def test_config_rules_name_the_file_and_the_key(tmp_path: Path) -> None:
    base = "http://127.0.0.1:9"
    text = problems(http_config(tmp_path, base, {"listen": "0.0.0.0:8787"}))
    assert f"{tmp_path / 'config.toml'}: [http] listen: 0.0.0.0:8787 is not a loopback" in text
    text = problems(http_config(tmp_path, base, {"listen": "0.0.0.0:8787", "allow_remote": True}))
    assert "[http] token: listening beyond loopback needs a token" in text
    text = problems(http_config(tmp_path, base, {"listen": "nonsense"}))
    assert "http" in text and "listen" in text and "HOST:PORT" in text
    text = problems(http_config(tmp_path, base, {"listen": "[::1]:99999"}))
    assert "out of range" in text
    (tmp_path / "empty").write_text("\n")
    text = problems(http_config(tmp_path, base, {"token_file": "empty"}))
    assert f"[http] token_file: {tmp_path / 'empty'} is empty" in text


def test_the_token_comes_from_env_then_file_then_config(tmp_path: Path) -> None:
    (tmp_path / "http-token").write_text(" from-file \n")
    remote = {"listen": "192.0.2.10:8787", "allow_remote": True, "token": "from-config"}
    config = http_config(tmp_path, "http://127.0.0.1:9", remote)
    settings, _ = load_settings(config, env={})
    assert settings.http.remote and settings.http.secret() == "from-config"
    config = http_config(tmp_path, "http://127.0.0.1:9", {**remote, "token_file": "http-token"})
    assert load_settings(config, env={})[0].http.secret() == "from-file"
    env = {ENV_HTTP_TOKEN: "from-env"}
    assert load_settings(config, env=env)[0].http.secret() == "from-env"


def test_a_broken_http_section_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = http_config(tmp_path, "http://127.0.0.1:9", {"listen": "10.1.2.3:80"})
    assert main(["--config", str(config), "status"]) == 2
    assert "[http] listen" in capsys.readouterr().err


def failed_job(tmp: Path, emulator: Any, daemons: list[Daemon], audio: Callable[..., Path]) -> int:
    """A daemon whose first job failed at MVSEP (its input moved to ``_failed``)."""
    emulator.add_fault(Fault(kind="job_failed", endpoint="create", times=1))
    daemon = start(http_config(tmp, emulator.base_url, LOCAL), daemons)
    audio("in/song.wav", seconds=1.0)
    journal = daemon.settings.journal.path

    def failed() -> bool:
        found = jobs(journal)
        return bool(found) and found[0].state is JobState.FAILED and bool(found[0].source_disposed)

    wait_until(failed, "the job failed and its input moved")
    return jobs(journal)[0].id


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def request_rows(journal_path: Path) -> int:
    with Journal(journal_path, read_only=True) as journal:
        return len(journal.requests(range(1, 1000)))


def test_host_check_and_the_cross_site_guard_of_retry(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
) -> None:
    job_id = failed_job(tmp_path, make_emulator(premium=True), daemons, audio_file)
    daemon = daemons[0]
    url, journal = base_url(daemon), daemon.settings.journal.path
    evil = {"Host": "rebound.example:80"}
    assert get(daemon, "/", headers=evil).status_code == 403  # DNS rebinding
    assert get(daemon, "/api/status.json", headers=evil).status_code == 403
    assert get(daemon, "/livez", headers=evil).status_code == 200
    csrf = csrf_of(get(daemon, "/").text)
    retry = f"{url}/jobs/{job_id}/retry"
    same = {"Origin": url}
    refused = [
        httpx.post(retry, data={}, headers=same),  # no CSRF token
        httpx.post(retry, data={"csrf": "guessed"}, headers=same),  # a wrong one
        httpx.post(retry, data={"csrf": csrf}, headers={"Origin": "http://evil.example"}),
        httpx.post(retry, data={"csrf": csrf}, headers={"Referer": "http://evil.example/x"}),
        httpx.post(retry, data={"csrf": csrf}),  # neither Origin nor Referer
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert request_rows(journal) == 0  # nothing reached the journal
    assert httpx.get(retry).status_code == 405
    assert httpx.post(f"{url}/jobs/999/retry", data={"csrf": csrf}, headers=same).status_code == 404

    done = httpx.post(retry, data={"csrf": csrf}, headers={"Referer": url + "/"})
    assert done.status_code == 303 and done.headers["location"].startswith("/?request=")
    assert request_rows(journal) == 1
    wait_until(lambda: jobs(journal)[0].state is JobState.FILED, "the retried job filed")
    note = get(daemon, done.headers["location"]).text
    assert 'id="request" data-state="done"' in note


def test_beyond_loopback_every_page_but_livez_needs_the_token(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    daemons: list[Daemon],
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start(http_config(tmp_path, make_emulator(premium=True).base_url, LOCAL), daemons)
    section = HttpSection(
        listen="192.0.2.10:8787", allow_remote=True, token=SecretStr(HTTP_TOKEN)
    )  # never bound: see the module docstring
    server = StatusServer(StatusApp(daemon, section=section), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"Host": "nas.example:8787"}) as client:
            check_remote_rule(client, server.url)
    finally:
        server.stop()
    assert HTTP_TOKEN not in capsys.readouterr().out


def check_remote_rule(client: httpx.Client, url: str) -> None:
    assert client.get("/livez").status_code == 200
    for path in ("/", "/readyz", "/api/status.json", "/metrics", "/jobs/1/retry"):
        assert client.get(path).status_code == 401, path
    wrong = {"Authorization": "Bearer not-it"}
    assert client.get("/api/status.json", headers=wrong).status_code == 401
    bearer = {"Authorization": f"Bearer {HTTP_TOKEN}"}
    assert client.get("/api/status.json", headers=bearer).status_code == 200
    assert client.get("/readyz", headers=bearer).status_code == 200
    login = client.get("/")
    assert 'name="token"' in login.text and HTTP_TOKEN not in login.text
    csrf = csrf_of(login.text)
    origin = {"Origin": "http://nas.example:8787"}
    bad = client.post("/login", data={"token": "not-it", "csrf": csrf}, headers=origin)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    cross = client.post("/login", data={"token": HTTP_TOKEN, "csrf": csrf})
    assert cross.status_code == 403
    ok = client.post("/login", data={"token": HTTP_TOKEN, "csrf": csrf}, headers=origin)
    assert ok.status_code == 303 and HTTP_TOKEN not in ok.headers["set-cookie"]
    assert "HttpOnly" in ok.headers["set-cookie"]
    page = client.get("/")  # the client keeps the cookie
    assert page.status_code == 200 and "Inboxes" in page.text
    assert HTTP_TOKEN not in page.text
    client.cookies.clear()
    assert client.get("/").status_code == 401


def test_a_port_taken_is_a_config_error_and_http_needs_a_restart(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            StatusServer(object(), "127.0.0.1", port, where="cfg.toml")
    assert f"cfg.toml: [http] listen: cannot listen on 127.0.0.1:{port}" in str(caught.value)
    old, _ = load_settings(http_config(tmp_path, "http://127.0.0.1:9", {}), env={})
    new, _ = load_settings(http_config(tmp_path, "http://127.0.0.1:9", LOCAL), env={})
    assert "http.listen" in plan_reload(old, new).needs_restart


def test_no_listen_no_server(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    daemon = start(http_config(tmp_path, make_emulator(premium=True).base_url, {}), daemons)
    assert daemon.http is None
