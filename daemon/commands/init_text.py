"""PURE: the text of the config ``mvsep-watch init`` writes. The values go through tomli-w
(quoting, escapes); the comments are added around each table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

STARTER_PRESETS: dict[str, dict[str, Any]] = {
    "vocals": {"sep_type": "BS Roformer (vocals, instrumental)", "output_format": "flac16"},
    "four-stems": {
        "sep_type": "Demucs4 HT (vocals, drums, bass, other)",
        "output_format": "flac16",
    },
    "karaoke": {"sep_type": "MVSep Karaoke (lead/back vocals)", "output_format": "flac16"},
}
"""Presets ``init`` offers by name (checked against the catalogue before they are written)."""


@dataclass(frozen=True)
class InitAnswers:
    """What the config is written from (flags or prompts)."""

    base_url: str
    token_file: Path | None  # None: the token comes from $MVSEP_API_TOKEN or api_token
    token: str | None  # only when the user passed it explicitly (--token)
    inbox: Path
    output: Path
    preset_name: str
    preset: dict[str, Any]  # sep_type, add_optN, output_format


def _comment(*lines: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _table(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)


def render_config(answers: InitAnswers) -> str:
    """The whole file: a header, then each table with its comments."""
    return "\n".join(
        [
            _header(),
            _mvsep(answers),
            _state(),
            _preset(answers),
            _inbox(answers),
        ]
    )


def _header() -> str:
    return _comment(
        "mvsep-watch configuration, written by `mvsep-watch init`.",
        "Every key, with its default and a comment: config.example.toml in the project.",
        "Relative paths are relative to this file's folder; `~` is expanded.",
        "Any key can be overridden as MVSEP_WATCH_<SECTION>__<KEY> in the environment.",
        "Check it with: mvsep-watch check-config (add --config PATH for another file).",
    )


def _mvsep(answers: InitAnswers) -> str:
    values: dict[str, Any] = {"base_url": answers.base_url}
    if answers.token_file is not None:
        values["api_token_file"] = str(answers.token_file)
        source = ["The API token is read from api_token_file (keep it chmod 600);"]
    elif answers.token is not None:
        values["api_token"] = answers.token
        source = ["The API token is written here, as asked (this file is chmod 600);"]
    else:
        source = [
            "No token here: set $MVSEP_API_TOKEN in the daemon's environment, or add",
            'api_token_file = "~/.config/mvsep-watch/token" (a file, chmod 600);',
        ]
    return (
        _comment(
            "The MVSEP API. One host serves a job for its whole life (mirrors: de.mvsep.com,",
            "hk.mvsep.com). Your token: mvsep.com → profile → API.",
            *source,
            "$MVSEP_API_TOKEN wins over both.",
        )
        + _table({"mvsep": values})
        + _comment(
            "Jobs at MVSEP at once (unset: the plan's limit, 1 free, 10 premium):",
            "max_parallel_jobs = 10",
        )
    )


def _state() -> str:
    return _comment(
        "The journal (every file seen, every job's history) and the algorithms cache live",
        "in the state folder by default: ~/.local/state/mvsep-watch/ (Linux),",
        "~/Library/Application Support/mvsep-watch/ (macOS). To put them elsewhere:",
        "[journal]",
        'path = "/var/lib/mvsep-watch/journal.sqlite"',
        "[catalogue]",
        'cache_path = "/var/lib/mvsep-watch/algorithms.json"',
    )


def _preset(answers: InitAnswers) -> str:
    return _comment(
        "A preset: what MVSEP does with a file. sep_type by number or by name as MVSEP",
        "shows it; add_opt1..add_opt10 by option key or label (unset: MVSEP's default);",
        "output_format: mp3, wav16, flac16, m4a (premium: wav32, flac24).",
        "All of them: mvsep-watch algorithms [SEARCH].",
    ) + _table({"presets": {answers.preset_name: answers.preset}})


def _inbox(answers: InitAnswers) -> str:
    inbox = {
        "path": str(answers.inbox),
        "preset": answers.preset_name,
        "output": str(answers.output),
    }
    return (
        _comment(
            "An inbox: a folder to watch. Each file that finishes arriving is sent with the",
            "preset and its stems filed under `output` (not inside any inbox). The input then",
            'goes to <path>/_processed (after_success = "archive"), a failed one to',
            "<path>/_failed with NAME.error.txt beside it. A network share is polled",
            '(poll = "auto"). Add more [[inbox]] tables for more folders.',
        )
        + "[[inbox]]\n"  # tomli-w may write a short array of tables inline
        + _table(inbox)
        + _comment(
            'More keys (defaults shown): settle_s = 5, recursive = true, poll = "auto",',
            'output_template = "{relative_dir}/{name}/{name} - {stem}.{ext}",',
            'after_success = "archive", archive_dir, failed_dir, sidecar = true.',
        )
    )
