"""The status page's HTML (pure) and the routes around it: escaping, progress bars, the
Retry form, no script; ``/api/status.json`` is ``status --json``; ``/metrics`` is mounted
from ``daemon.metrics`` when that module exists (404 without it, 501 when it cannot render).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from http_harness import daemons, get, http_config, start

from daemon.http import page
from daemon.service import Daemon

__all__ = ["daemons"]  # the fixture, imported
LOCAL = {"listen": "127.0.0.1:0"}
ROOT = Path(__file__).resolve().parents[1]


def job(**extra: Any) -> dict[str, Any]:
    base = {"id": 7, "file": "/in/<b>x</b>.wav", "inbox": "in", "preset": "vocals",
            "output_dir": "/out", "state": "queued", "mvsep_status": "waiting",
            "last_error": "bad <script>alert(1)</script>", "updated_at": "2026-01-01",
            "outputs": [], "credits": None, "age_s": 75.0, "progress": None}  # fmt: skip
    return base | extra


def data(**extra: Any) -> dict[str, Any]:
    status = {"journal": "/j.sqlite", "daemon": {"running": True, "pid": "1"}, "total": 1,
              "account": {"paused": "token <refused>", "since": "2026-01-01T00:00:00+00:00"},
              "inboxes": [{"inbox": "in", "path": "/in", "preset": "vocals",
                           "output_dir": "/out", "mode": "polling", "mode_reason": "cifs",
                           "paused": None, "counts": {"queued": 1}}],
              "credits_today": 2.5}  # fmt: skip
    return {"status": status, "now": "t", "in_flight": [], "failed": [], "filed": [],
            "credits_left": 42.0, "credits_left_note": "as of t"} | extra  # fmt: skip


def test_progress_bars_for_queue_chunks_and_transfers() -> None:
    progress = {"queue": {"status": "distributing", "finished_chunks": 2, "all_chunks": 5},
                "upload": {"sent": 50, "total": 200},
                "download": {"stem": "vocals", "received": 3, "total": 4}}  # fmt: skip
    html = page.progress_cells(progress)
    assert '<progress value="2" max="5">' in html and "40%" in html
    assert '<progress value="50" max="200">' in html and "25%" in html
    assert "download vocals" in html and '<progress value="3" max="4">' in html
    waiting = page.progress_cells({"queue": {"status": "waiting", "current_order": 3}})
    assert "queue position 3" in waiting and "<progress" not in waiting
    assert "-" in page.progress_cells(None)


def test_everything_is_escaped_and_there_is_no_script() -> None:
    failed = job(state="failed", mvsep_status=None)
    html = page.render_page(data(failed=[failed], in_flight=[job()]), csrf="c&d")
    assert "<script>" not in html and "<b>x</b>" not in html
    assert "bad &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;.wav" in html
    assert "token &lt;refused&gt;" in html and 'id="account-banner"' in html
    assert '<form method="post" action="/jobs/7/retry">' in html
    assert '<input type="hidden" name="csrf" value="c&amp;d">' in html
    assert f'<meta http-equiv="refresh" content="{page.REFRESH_S}">' in html
    assert 'Credits left: <b id="credits-left">42</b>' in html
    assert "queued/waiting" in html and "1m" in html  # state and age


def test_recent_results_show_their_stems_folders() -> None:
    filed = job(state="filed", outputs=["/out/A/a - Vocals.wav", "/out/A/a - Inst.wav"])
    assert page.folders_of(filed) == ["/out/A"]
    assert page.folders_of(job(outputs=[])) == ["/out"]
    html = page.render_page(data(filed=[filed]), csrf="c")
    assert '<code class="folder">/out/A</code>' in html


def test_status_json_is_the_status_command_json(
    tmp_path: Path, make_emulator: Callable[..., Any], daemons: list[Daemon]
) -> None:
    config = http_config(tmp_path, make_emulator(premium=True).base_url, LOCAL)
    daemon = start(config, daemons)
    served = get(daemon, "/api/status.json")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "status", "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert served.json() == json.loads(done.stdout)  # no job yet: no age to differ
    assert served.json()["daemon"]["running"] is True
    assert "harness-token-1" not in served.text


def test_metrics_are_served_from_the_journal(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/metrics is daemon.metrics' page, read through a connection of its own; 501 without
    prometheus_client (its absence is simulated: the package is installed for the tests)."""
    from prometheus_client.parser import text_string_to_metric_families

    from daemon import metrics

    daemon = start(http_config(tmp_path, make_emulator(premium=True).base_url, LOCAL), daemons)
    scraped = get(daemon, "/metrics")
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    names = {f.name for f in text_string_to_metric_families(scraped.text)}
    assert "mvsep_watch_jobs" in names and "mvsep_watch_slots_in_use" in names

    def missing(journal: Any, live: Any = None) -> tuple[bytes, str]:
        raise metrics.MetricsUnavailable("pip install 'mvsep-watch[http]' for /metrics")

    monkeypatch.setattr(metrics, "render", missing)
    unavailable = get(daemon, "/metrics")
    assert unavailable.status_code == 501 and "mvsep-watch[http]" in unavailable.text
