"""``mvsep-watch emulator --help`` through the real entry point: plain text (no ``markup``),
every option's default shown, the fault kinds listed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from daemon.emulator.cli import build_parser
from daemon.emulator.faults import FAULT_KINDS

ROOT = Path(__file__).resolve().parents[1]


def test_emulator_help_is_plain_and_shows_every_default() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "emulator", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "``" not in text and ":class:" not in text
    assert "--processing S        processing time, in seconds (default: 2.0)" in text
    assert "(default: 127.0.0.1)" in text and "(default: reject)" in text
    assert all(kind in text for kind in FAULT_KINDS)
    options = [a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert options and all("default" in (a.help or "") for a in options)
