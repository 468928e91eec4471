"""What the one-shot commands (``algorithms``, ``account``, ``init``, ``check-config``)
share: a client that asks once and answers fast, the catalogue cache, and the settings of a
config that may not exist yet."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic import SecretStr

from daemon.catalogue import CatalogueCache
from daemon.config import ENV_TOKEN, Settings, resolve_config_path
from daemon.logs import register_secret
from daemon.mvsep.client import MvsepClient

QUICK_TIMEOUT_S = 10.0
"""A command a person waits for: one try, at most this long per call, no retries."""


def quick_client(settings: Settings) -> MvsepClient:
    """A client of the configured host that tries each call once (a dead base URL is
    reported in seconds, not after minutes of backoff)."""
    token = settings.token() or ""
    register_secret(token)
    mvsep = settings.mvsep
    return MvsepClient(
        base_url=mvsep.base_url,
        api_token=token,
        connect_timeout_s=min(mvsep.connect_timeout_s, QUICK_TIMEOUT_S),
        read_timeout_s=min(mvsep.read_timeout_s, 3 * QUICK_TIMEOUT_S),
        max_attempts=1,
        retry_timeout_s=QUICK_TIMEOUT_S,
    )


def catalogue_cache(settings: Settings, client: MvsepClient) -> CatalogueCache:
    return CatalogueCache(
        settings.catalogue.cache_path,
        fetch=client.algorithms,
        max_age_s=settings.catalogue.max_age_s,
    )


def config_exists(args: argparse.Namespace) -> bool:
    """Whether the config file the command would read is there."""
    return resolve_config_path(args.config, os.environ).is_file()


def default_settings() -> Settings:
    """The settings of an empty config (no file yet: ``algorithms`` before ``init``);
    the token from the environment still counts."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    settings = Settings()
    if not token:
        return settings
    mvsep = settings.mvsep.model_copy(update={"api_token": SecretStr(token)})
    return settings.model_copy(update={"mvsep": mvsep})


def settings_for(args: argparse.Namespace, *, require_token: bool) -> tuple[Settings, Path | None]:
    """The config's settings, or (no config file, and none named by ``--config``) the
    defaults; a config that is there but broken is a ConfigError (exit 2)."""
    from daemon.commands import load_config, setup_logs

    if args.config is None and not config_exists(args):
        settings = default_settings()
        setup_logs(args, settings)
        return settings, None
    return load_config(args, require_token=require_token)
