"""Shared by the notification and hook tests: a loopback HTTP receiver that records what
apprise POSTs to it (a real ``http.server`` thread), and jobs taken to filed or failed in a
real journal."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon.jobs import Job, JobRequest, ResultFile, SourceFile
from daemon.journal import Journal


class Receiver:
    """Records each POST body (JSON) on 127.0.0.1; answers ``status`` (200 by default)."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if receiver.status == 200:
                    receiver.posts.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"json://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A loopback port nothing listens on (yet): a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def receiver(port: int = 0) -> Iterator[Receiver]:
    with Receiver(port) as r:
        yield r


def source(tmp: Path, name: str = "song.wav", inbox: str = "main") -> SourceFile:
    return SourceFile(
        path=tmp / "in" / name,
        inbox=inbox,
        relative_path=name,
        preset="vocals",
        request=JobRequest(40, {"add_opt1": "3"}, 2, "BS Roformer"),
        output_dir=tmp / "out",
        output_template="{name}/{stem}.{ext}",
        failed_dir=tmp / "in" / "_failed",
    )


def file_job(journal: Journal, tmp: Path, name: str = "song.wav", inbox: str = "main") -> Job:
    """A job through every state to ``filed`` with two stems and its credits."""
    job, _ = journal.record_seen(source(tmp, name, inbox), size=10, mtime=5.0)
    journal.mark_prepared(job.id, "sha-" + name, 1.0)
    journal.claim_next_ready(lambda: "nonce")
    journal.mark_submitted(job.id, "hash-" + name)
    journal.mark_credits(job.id, 2.0)
    files = [ResultFile(type=t, url=f"http://x/{t}", download=f"{t}.wav") for t in "VI"]
    journal.mark_result_ready(job.id, files)
    stems = [tmp / "out" / name / "vocals.wav", tmp / "out" / name / "instrum.wav"]
    journal.mark_outputs_planned(job.id, stems)
    return journal.mark_filed(job.id, stems)


def fail_job(journal: Journal, tmp: Path, name: str = "bad.wav", inbox: str = "main") -> Job:
    job, _ = journal.record_seen(source(tmp, name, inbox), size=10, mtime=5.0)
    return journal.mark_failed(job.id, "not audio: no RIFF header")
