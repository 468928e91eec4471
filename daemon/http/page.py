"""PURE: the status page (``/``), server-rendered HTML that refreshes itself.

No JavaScript: a ``<meta http-equiv="refresh">`` reloads it, progress is ``<progress>``,
the Retry button is a plain form POST carrying the CSRF token. Every value from the journal,
the config or MVSEP goes through :func:`html.escape`. The data is
:func:`daemon.http.view.page_data`'s; the tokens never reach it (the CSRF token is a
per-process random value, not a secret of the user).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from daemon.status import age_text

REFRESH_S = 5
STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}code{font-size:.9em;word-break:break-all}
.banner{background:#b00020;color:#fff;padding:.6em 1em;border-radius:4px;margin:.6em 0}
.note{background:#e8f0fe;padding:.5em 1em;border-radius:4px;margin:.6em 0}
.muted{color:#666}.paused{color:#b00020;font-weight:600}progress{width:10em}
.credits span{margin-right:2em}button{cursor:pointer}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _rows(rows: list[str], headers: tuple[str, ...], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _bar(label: str, done: float | int | None, total: float | int | None) -> str:
    if not total:
        return ""
    value = min(float(done or 0), float(total))
    percent = int(100 * value / float(total))
    return (
        f'<div>{_e(label)} <progress value="{value:g}" max="{float(total):g}">'
        f"{percent}%</progress> {percent}%</div>"
    )


def progress_cells(progress: dict[str, Any] | None) -> str:
    """Queue position, chunks and transfer bars of one job in flight."""
    if not progress:
        return '<span class="muted">-</span>'
    parts: list[str] = []
    queue = progress.get("queue") or {}
    position = queue.get("current_order", queue.get("queue_count"))
    if position is not None and queue.get("status") == "waiting":
        parts.append(f'<div class="queue">queue position {_e(position)}</div>')
    if queue.get("all_chunks"):
        parts.append(_bar("chunks", queue.get("finished_chunks"), queue["all_chunks"]))
    upload = progress.get("upload") or {}
    parts.append(_bar("upload", upload.get("sent"), upload.get("total")))
    download = progress.get("download") or {}
    stem = f"download {download['stem']}" if download.get("stem") else "download"
    parts.append(_bar(stem, download.get("received"), download.get("total")))
    return "".join(parts) or '<span class="muted">-</span>'


def _banner(data: dict[str, Any]) -> str:
    account = data["status"].get("account")
    if account is None:
        return ""
    return (
        f'<div class="banner" id="account-banner"><b>Submits paused</b> since '
        f"{_e(account['since'])}: {_e(account['paused'])}. Files stay where they are and "
        "go on by themselves once the account works again.</div>"
    )


def _credits(data: dict[str, Any]) -> str:
    left = data.get("credits_left")
    left_text = "unknown" if left is None else f"{left:g}"
    note = data.get("credits_left_note") or ""
    return (
        f'<p class="credits" id="credits"><span>Credits used today: '
        f"<b>{data['status'].get('credits_today', 0):g}</b></span>"
        f'<span>Credits left: <b id="credits-left">{_e(left_text)}</b> '
        f'<span class="muted">{_e(note)}</span></span></p>'
    )


def _inbox_row(inbox: dict[str, Any]) -> str:
    mode = inbox.get("mode") or "unknown"
    why = (
        f' <span class="muted">({_e(inbox["mode_reason"])})</span>'
        if inbox.get("mode_reason")
        else ""
    )
    paused = (
        f'<div class="paused">paused: {_e(inbox["paused"])}</div>' if inbox.get("paused") else ""
    )
    counts = ", ".join(f"{_e(s)} {n}" for s, n in sorted((inbox.get("counts") or {}).items()))
    return (
        f'<tr class="inbox" data-inbox="{_e(inbox["inbox"])}"><td>{_e(inbox["inbox"])}</td>'
        f"<td><code>{_e(inbox['path'])}</code></td><td>{_e(inbox['preset'])}</td>"
        f"<td><code>{_e(inbox['output_dir'])}</code></td>"
        f'<td class="mode">{_e(mode)}{why}{paused}</td>'
        f"<td>{counts or 'none'}</td></tr>"
    )


def _state(job: dict[str, Any]) -> str:
    return _e(job["state"] + (f"/{job['mvsep_status']}" if job.get("mvsep_status") else ""))


def _flight_row(job: dict[str, Any]) -> str:
    return (
        f'<tr class="job in-flight" data-job="{job["id"]}"><td>#{job["id"]}</td>'
        f"<td><code>{_e(job['file'])}</code></td><td>{_state(job)}</td>"
        f"<td>{progress_cells(job.get('progress'))}</td>"
        f"<td>{_e(age_text(job.get('age_s') or 0))}</td></tr>"
    )


def _failed_row(job: dict[str, Any], csrf: str) -> str:
    form = (
        f'<form method="post" action="/jobs/{job["id"]}/retry">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" class="retry">Retry</button></form>'
    )
    return (
        f'<tr class="job failed" data-job="{job["id"]}"><td>#{job["id"]}</td>'
        f"<td><code>{_e(job['file'])}</code></td>"
        f'<td class="reason">{_e(job.get("last_error") or "no reason journaled")}</td>'
        f"<td>{_e(job['updated_at'])}</td><td>{form}</td></tr>"
    )


def folders_of(job: dict[str, Any]) -> list[str]:
    """The folders a filed job's stems are in (else its output folder)."""
    outputs = job.get("outputs") or []
    return sorted({str(Path(p).parent) for p in outputs}) or [str(job["output_dir"])]


def _filed_row(job: dict[str, Any]) -> str:
    folders = "<br>".join(f'<code class="folder">{_e(f)}</code>' for f in folders_of(job))
    credits = "-" if job.get("credits") is None else f"{job['credits']:g}"
    return (
        f'<tr class="job filed" data-job="{job["id"]}"><td>#{job["id"]}</td>'
        f"<td><code>{_e(job['file'])}</code></td><td>{folders}</td><td>{credits}</td>"
        f"<td>{_e(job['updated_at'])}</td></tr>"
    )


def _request_note(data: dict[str, Any]) -> str:
    request = data.get("request")
    if request is None:
        return ""
    state = {"pending": "asked; waiting for the daemon", "done": "done", "refused": "refused"}
    text = state.get(request["state"], request["state"])
    result = f": {_e(request['result'])}" if request.get("result") else ""
    return (
        f'<div class="note" id="request" data-state="{_e(request["state"])}">'
        f"{_e(request['action'])} of job #{request['job_id']} {_e(text)}{result}"
        "</div>"
    )


def render_page(data: dict[str, Any], *, csrf: str) -> str:
    status = data["status"]
    daemon = status.get("daemon") or {}
    running = f"running (pid {_e(daemon.get('pid'))})" if daemon.get("running") else "not running"
    sections = [
        _banner(data),
        _request_note(data),
        f'<p class="muted">daemon {running}; journal <code>{_e(status.get("journal"))}</code>; '
        f"{status.get('total', 0)} job(s); as of {_e(data.get('now'))}</p>",
        _credits(data),
        "<h2>Inboxes</h2>",
        _rows(
            [_inbox_row(i) for i in status.get("inboxes", [])],
            ("inbox", "folder", "preset", "output", "watch", "jobs"),
            "no inbox",
        ),
        "<h2>In flight</h2>",
        _rows(
            [_flight_row(j) for j in data.get("in_flight", [])],
            ("job", "file", "state", "progress", "age"),
            "nothing in flight",
        ),
        "<h2>Failures</h2>",
        _rows(
            [_failed_row(j, csrf) for j in data.get("failed", [])],
            ("job", "file", "reason", "when", ""),
            "no failures",
        ),
        "<h2>Recent results</h2>",
        _rows(
            [_filed_row(j) for j in data.get("filed", [])],
            ("job", "file", "stems in", "credits", "filed"),
            "nothing filed yet",
        ),
    ]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>mvsep-watch</title><style>{STYLE}</style></head><body>"
        f"<h1>mvsep-watch</h1>{''.join(sections)}</body></html>"
    )


def render_login(*, csrf: str, failed: bool) -> str:
    """The form that sets the session cookie (listening beyond loopback)."""
    wrong = '<p class="banner">That token is not the one configured.</p>' if failed else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>mvsep-watch: sign in</title><style>{STYLE}</style></head><body>"
        f"<h1>mvsep-watch</h1>{wrong}<p>This status page needs the token of "
        "<code>[http] token</code>.</p>"
        '<form method="post" action="/login"><input type="password" name="token" '
        f'autocomplete="current-password"><input type="hidden" name="csrf" value="{_e(csrf)}">'
        ' <button type="submit">Sign in</button></form></body></html>'
    )
