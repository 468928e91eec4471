"""Cross-field checks of a loaded config that pydantic cannot express (one line each).

The token is there when it is needed, each inbox's preset exists, an output folder is not
inside an inbox (its stems would come back as input), inboxes do not nest, inbox names are
distinct. :func:`daemon.config.collect_settings` runs them after validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.config import Settings


def check_settings(settings: Settings, path: Path, *, require_token: bool) -> list[str]:
    """Cross-field checks pydantic cannot express. Returns one line per problem."""
    from daemon.config import ENV_TOKEN

    problems: list[str] = []
    if require_token and not settings.token():
        problems.append(
            f"{path}: [mvsep] api_token: no API token — set ${ENV_TOKEN}, "
            "[mvsep] api_token_file, or [mvsep] api_token"
        )
    inboxes = [(i, _absolute(ib.path)) for i, ib in enumerate(settings.inbox)]
    for i, inbox in enumerate(settings.inbox):
        where = f"{path}: [[inbox]] #{i + 1}"
        if inbox.preset not in settings.presets:
            known = ", ".join(sorted(settings.presets)) or "none defined"
            problems.append(f"{where} preset: no preset {inbox.preset!r} (known: {known})")
        output = _absolute(inbox.output)
        for j, other in inboxes:
            if _inside(output, other):
                problems.append(
                    f"{where} output: {inbox.output} is inside inbox #{j + 1} ({other}); "
                    "stems would be picked up as new input — move the output folder out"
                )
            if j != i and _inside(_absolute(inbox.path), other):
                problems.append(
                    f"{where} path: {inbox.path} is inside inbox #{j + 1} ({other}); "
                    "inboxes must not nest"
                )
    names = [ib.display_name for ib in settings.inbox]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{path}: [[inbox]] name: {name!r} is used twice — set distinct names")
    return problems


def _absolute(p: Path) -> Path:
    return Path(os.path.abspath(p.expanduser()))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents
