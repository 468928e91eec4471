"""Notification URLs through apprise, to a real loopback HTTP receiver (``json://``): what
arrives, what a failure says (never the URL's secret), which URLs the config refuses, and
the notifier's own thread delivering a job's notification."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from daemon_harness import wait_until
from notify_rig import Receiver, fail_job, file_job

from daemon.config import load_settings
from daemon.errors import ConfigError
from daemon.journal import Journal
from daemon.notify.outbox import DeliveryError
from daemon.notify.runner import Notifications
from daemon.notify.sender import AppriseSender, url_id, url_problems
from daemon.notify.wiring import build_notifications


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_message_arrives_at_the_receiver(rx: Receiver) -> None:
    sender = AppriseSender([rx.url])
    assert sender.targets() == [url_id(rx.url)] and sender.scheme(url_id(rx.url)) == "json"
    sender.send(url_id(rx.url), "the title", "the body")
    [post] = rx.posts
    assert (post["title"], post["message"]) == ("the title", "the body")


def test_a_failure_names_the_scheme_never_the_secret(rx: Receiver) -> None:
    url = f"json://someone:hunter2-secret@127.0.0.1:{rx.port}/hook-path-secret"
    rx.status = 500
    with pytest.raises(DeliveryError) as caught:
        AppriseSender([url]).send(url_id(url), "t", "b")
    text = str(caught.value)
    assert text.startswith("json://: ") and len(text) > len("json://: ")
    assert "hunter2-secret" not in text and "hook-path-secret" not in text
    assert rx.posts == []


def test_urls_apprise_cannot_use_are_config_problems(rx: Receiver) -> None:
    problems = url_problems([rx.url, "nosuchscheme://token-abc/x"], where="cfg.toml")
    assert problems == [
        "cfg.toml: [notify] urls #2: apprise cannot use this nosuchscheme:// URL — see "
        "https://github.com/caronc/apprise/wiki for its form"
    ]
    assert "token-abc" not in problems[0]


def test_the_daemon_refuses_a_bad_url_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"notify": {"urls": ["nosuchscheme://x"], "on": ["done"]}}))
    settings, _ = load_settings(path, env={"MVSEP_API_TOKEN": "x"})
    assert settings.notify.on == ["done"]
    with Journal(tmp_path / "journal.sqlite") as journal:
        with pytest.raises(ConfigError, match=r"\[notify\] urls #1"):
            build_notifications(journal, lambda: settings, where=str(path))


def test_an_unknown_topic_is_a_config_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"notify": {"on": ["failed", "everything"]}}))
    with pytest.raises(ConfigError, match=r"notify.*on"):
        load_settings(path, env={"MVSEP_API_TOKEN": "x"})


def test_the_notifier_thread_delivers_job_notifications(tmp_path: Path, rx: Receiver) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        n = Notifications(
            journal=journal, hooks_for=lambda inbox: {}, urls=[rx.url], topics=("done", "failed")
        )
        n.start()
        try:
            job = file_job(journal, tmp_path)
            fail_job(journal, tmp_path, "broken.wav")
            wait_until(lambda: len(rx.posts) == 2, "both notifications")
        finally:
            n.stop()
    done, failed = sorted(rx.posts, key=lambda p: str(p["title"]))[::-1]
    assert done["title"] == "mvsep-watch: song.wav separated"
    assert f"2 stem(s) filed in {tmp_path / 'out' / 'song.wav'}" in done["message"]
    assert "2 credits" in done["message"] and str(job.source.path) in done["message"]
    assert failed["title"] == "mvsep-watch: broken.wav failed"
    assert "not audio: no RIFF header" in failed["message"]
