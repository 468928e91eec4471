"""`status --json` prints JSON even when there is no journal yet (issue 9, item 14).

Runs the real `mvsep-watch status --json` as a subprocess on a config whose journal does
not exist: the output must parse as JSON, name no journal, and exit 0 as the text form does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-nojournal-secret-31"


def run_status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "daemon", "--config", str(config), "status", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_status_json_without_a_journal_is_json(tmp_path: Path) -> None:
    journal = tmp_path / "state" / "journal.sqlite"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mvsep]\napi_token = "{TOKEN}"\n[journal]\npath = "{journal}"\n', encoding="utf-8"
    )
    config.chmod(0o644)  # readable by others: its warning must not land in the JSON
    text = run_status(config)
    done = run_status(config, "--json")
    assert done.returncode == text.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["journal"] is None
    assert data["counts"] == {} and data["recent"] == []
    assert "no journal" in data["note"]
    assert TOKEN not in done.stdout + done.stderr
    assert not journal.exists()  # status never creates one
