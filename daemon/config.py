"""Configuration: a TOML file with environment overrides, validated once, at the edge.

This is the only module that reads config files and the environment. Where the file comes
from: ``--config PATH``, else ``$MVSEP_WATCH_CONFIG``, else the platform config dir
(``~/.config/mvsep-watch/config.toml`` on Linux, ``~/Library/Application Support/...`` on
macOS). Any key can be overridden from the environment as ``MVSEP_WATCH_<SECTION>__<KEY>``
(e.g. ``MVSEP_WATCH_MVSEP__BASE_URL``). The API token may come from ``$MVSEP_API_TOKEN``,
from systemd's credential ``$CREDENTIALS_DIRECTORY/mvsep_token``, from ``[mvsep] api_token_file``
or from ``[mvsep] api_token``, in that order of precedence.

Every problem becomes one line of a :class:`~daemon.errors.ConfigError` naming the file, the
key and what was expected; the CLI prints them and exits with code 2.
"""

from __future__ import annotations

import copy
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.config_http import HttpSection, resolve_http
from daemon.config_messages import RENAMED_KEYS, describe_location, format_error
from daemon.errors import ConfigError
from daemon.formats import OutputFormat, parse_output_format
from daemon.notify.section import NotifySection

__all__ = ["RENAMED_KEYS", "describe_location"]  # kept importable from here

APP_NAME = "mvsep-watch"
ENV_CONFIG = "MVSEP_WATCH_CONFIG"
ENV_TOKEN = "MVSEP_API_TOKEN"
ENV_PREFIX = "MVSEP_WATCH_"
CREDENTIAL_NAME = "mvsep_token"
"""systemd ``LoadCredential=mvsep_token:FILE``: read from ``$CREDENTIALS_DIRECTORY``."""
ARCHIVE_DIR_NAME = "_processed"
"""Default archive folder inside an inbox (``[[inbox]] archive_dir``)."""
FAILED_DIR_NAME = "_failed"
"""Default failed folder inside an inbox (``[[inbox]] failed_dir``)."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP_NAME))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MvsepSection(_Section):
    base_url: str = "https://mvsep.com"
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    connect_timeout_s: float = Field(default=30.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    upload_timeout_s: float = Field(default=1200.0, gt=0)
    max_parallel_jobs: int | None = Field(default=None, ge=1, le=100)
    account_recheck_s: float = Field(default=3600.0, gt=0)
    rate_limit_per_minute: int = Field(default=60, ge=1, le=10_000)
    free_max_file_mb: float = Field(default=100.0, gt=0)
    free_max_duration_min: float = Field(default=10.0, gt=0)
    premium_max_file_mb: float = Field(default=1000.0, gt=0)
    premium_max_duration_min: float = Field(default=100.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")


class JournalSection(_Section):
    path: Path = Field(default_factory=lambda: default_state_dir() / "journal.sqlite")


OPTION_NUMBERS: tuple[int, ...] = tuple(range(1, 11))
"""The ``add_optN`` fields a separation type may have (sep_type 121 uses all ten)."""
OPTION_FIELDS: tuple[str, ...] = tuple(f"add_opt{n}" for n in OPTION_NUMBERS)


class PresetSection(_Section):
    sep_type: int | str
    add_opt1: str | int | None = None
    add_opt2: str | int | None = None
    add_opt3: str | int | None = None
    add_opt4: str | int | None = None
    add_opt5: str | int | None = None
    add_opt6: str | int | None = None
    add_opt7: str | int | None = None
    add_opt8: str | int | None = None
    add_opt9: str | int | None = None
    add_opt10: str | int | None = None
    output_format: str | int = "flac16"

    @field_validator("output_format")
    @classmethod
    def _format(cls, value: str | int) -> str | int:
        parse_output_format(value)
        return value

    @property
    def format(self) -> OutputFormat:
        return parse_output_format(self.output_format)

    def options(self) -> dict[str, str]:
        """The add_opt1..add_opt10 fields that are set, as strings (keys or labels, resolved
        later against the catalogue)."""
        raw = {name: getattr(self, name) for name in OPTION_FIELDS}
        return {k: str(v) for k, v in raw.items() if v is not None}


class InboxSection(_Section):
    path: Path
    preset: str
    output: Path
    name: str | None = None
    recursive: bool = True
    subfolders_as_presets: bool = False
    poll: bool | Literal["auto"] = "auto"
    """auto: poll when the inbox is on a network or FUSE filesystem (or one not known)."""
    follow_symlinks: bool = False
    """Process links to files outside the inbox (their stems land in this inbox's output)."""
    poll_interval_s: float = Field(default=10.0, gt=0)
    settle_s: float = Field(default=5.0, ge=0)
    extensions: list[str] | None = None
    output_template: str | None = None
    on_collision: Literal["suffix", "overwrite", "skip"] = "suffix"
    after_success: Literal["archive", "delete", "keep"] = "archive"
    archive_dir: Path | None = None
    failed_dir: Path | None = None
    sidecar: bool = True
    on_done: list[str] | None = None
    """A hook (argv, no shell) run when a job is filed; None: ``[notify] on_done``."""
    on_failed: list[str] | None = None

    @field_validator("poll", mode="before")
    @classmethod
    def _poll(cls, value: object) -> object:
        words = {"auto": "auto", "true": True, "false": False}
        if isinstance(value, str) and value.strip().lower() in words:
            return words[value.strip().lower()]
        if isinstance(value, bool):
            return value
        raise ValueError("expected auto, true or false")

    @property
    def display_name(self) -> str:
        return self.name or self.path.name or str(self.path)

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.path / ARCHIVE_DIR_NAME

    @property
    def failed_path(self) -> Path:
        return self.failed_dir or self.path / FAILED_DIR_NAME


class EngineSection(_Section):
    max_transfers: int = Field(default=3, ge=1, le=32)
    retry_deadline_s: float = Field(default=24 * 3600.0, gt=0)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_cap_s: float = Field(default=600.0, gt=0)
    resubmit_expired: bool = False
    dedupe_same_content: bool = True
    on_cancel_processing: Literal["discard", "keep"] = "discard"
    reconcile_grace_s: float = Field(default=120.0, ge=0)
    poll_unknown_s: float = Field(default=15.0, gt=0)
    poll_max_s: float = Field(default=60.0, gt=0)
    cut_off_wait_s: float = Field(default=900.0, ge=0)
    missing_inbox_recheck_s: float = Field(default=60.0, gt=0)


class CreditsSection(_Section):
    """Premium only (the free plan's daily quota is not in the API): over a limit, jobs wait
    ``held``, nothing sent. Unset: no limit."""

    max_credits_per_day: float | None = Field(default=None, ge=0)
    keep_credits_at_least: float | None = Field(default=None, ge=0)


class WatchSection(_Section):
    rescan_interval_s: float = Field(default=300.0, gt=0)


class LoggingSection(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class CatalogueSection(_Section):
    cache_path: Path = Field(default_factory=lambda: default_state_dir() / "algorithms.json")
    max_age_s: float = Field(default=86400.0, gt=0)


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mvsep: MvsepSection = Field(default_factory=MvsepSection)
    journal: JournalSection = Field(default_factory=JournalSection)
    presets: dict[str, PresetSection] = Field(default_factory=dict)
    inbox: list[InboxSection] = Field(default_factory=list)
    engine: EngineSection = Field(default_factory=EngineSection)
    credits: CreditsSection = Field(default_factory=CreditsSection)
    watch: WatchSection = Field(default_factory=WatchSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    catalogue: CatalogueSection = Field(default_factory=CatalogueSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    http: HttpSection = Field(default_factory=HttpSection)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    def token(self) -> str | None:
        """The API token, from wherever it was given (see the module docstring)."""
        secret = self.mvsep.api_token
        return secret.get_secret_value() if secret is not None else None


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "mvsep": MvsepSection,
    "journal": JournalSection,
    "presets": PresetSection,
    "inbox": InboxSection,
    "engine": EngineSection,
    "credits": CreditsSection,
    "watch": WatchSection,
    "logging": LoggingSection,
    "catalogue": CatalogueSection,
    "notify": NotifySection,
    "http": HttpSection,
}
_SECTIONS = {name: frozenset(model.model_fields) for name, model in _SECTION_MODELS.items()}
"""Each section's keys, for "did you mean" lines."""


def resolve_config_path(cli_path: str | Path | None, env: Mapping[str, str]) -> Path:
    if cli_path:
        return Path(cli_path).expanduser()
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    return default_config_path()


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    require_token: bool = True,
    require_inboxes: bool = False,
) -> tuple[Settings, Path]:
    """Read, merge and validate the configuration. Raises ConfigError with one line per problem."""
    settings, config_path, problems = collect_settings(
        path, env=env, require_token=require_token, require_inboxes=require_inboxes
    )
    if problems or settings is None:
        raise ConfigError(problems)
    return settings, config_path


def collect_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    require_token: bool = True,
    require_inboxes: bool = False,
) -> tuple[Settings | None, Path, list[str]]:
    """Every problem of the configuration at once, with the settings as far as they go.

    Unknown keys and invalid values are reported, then left out, so the rest is still
    checked (a typo does not hide a missing token); the settings are ``None`` only when what
    is left cannot be built (a required key missing). A file that cannot be read or parsed
    raises ConfigError (nothing else can be checked).
    """
    environ = os.environ if env is None else env
    config_path = resolve_config_path(path, environ)
    data = _read_toml(config_path)
    _warn_if_token_readable(config_path, data)
    settings, problems = _validate(data, config_path, environ)
    if settings is None:
        return None, config_path, problems
    settings = _anchor_paths(settings, config_path.absolute().parent)
    try:
        settings = _with_token(settings, config_path, environ)
    except ConfigError as exc:  # the token file's problem says it all: no second line
        problems += exc.problems
        require_token = False
    http, http_problems = resolve_http(settings.http, config_path=config_path, env=environ)
    settings, problems = settings.model_copy(update={"http": http}), problems + http_problems
    from daemon.config_checks import check_settings

    problems += check_settings(settings, config_path, require_token=require_token)
    if require_inboxes and not settings.inbox:
        problems.append(f"{config_path}: [[inbox]]: no inbox configured — add at least one")
    return settings, config_path, problems


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found — copy config.example.toml there, "
            f"or pass --config PATH / set {ENV_CONFIG}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _warn_if_token_readable(path: Path, data: Mapping[str, Any]) -> None:
    """A config file that holds ``api_token`` is a token file: warn like one."""
    section = data.get("mvsep")
    if not isinstance(section, Mapping) or not section.get("api_token"):
        return
    if _readable_by_others(path):
        import structlog

        structlog.get_logger(__name__).warning(
            "config file holds api_token and is readable by other users; consider chmod 600 "
            "or moving the token to api_token_file",
            config_file=str(path),
        )


def _validate(
    data: dict[str, Any], path: Path, env: Mapping[str, str]
) -> tuple[Settings | None, list[str]]:
    saved = _swap_environ(env)
    try:
        try:
            return Settings(**data), []
        except ValidationError as exc:
            errors = exc.errors()
        problems = [
            format_error(path, err, env, sections=_SECTIONS, prefix=ENV_PREFIX) for err in errors
        ]
        pruned = copy.deepcopy(data)
        for err in errors:
            _prune(pruned, tuple(err.get("loc", ())))
        try:
            return Settings(**pruned), problems
        except ValidationError:
            return None, problems
    finally:
        _swap_environ(saved)


def _prune(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    """Drop the key at ``loc`` (an unknown key, an invalid value: it takes its default)."""
    node: Any = data
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if loc and isinstance(node, dict):
        node.pop(loc[-1], None)


def _swap_environ(env: Mapping[str, str]) -> dict[str, str]:
    """pydantic-settings reads os.environ; let callers (tests) pass their own mapping."""
    if env is os.environ:
        return dict(os.environ)
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    return saved


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    """Relative paths in the file are relative to the file's folder; ``~`` is expanded."""

    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    inboxes = [
        ib.model_copy(
            update={
                "path": fix(ib.path),
                "output": fix(ib.output),
                "archive_dir": fix(ib.archive_dir),
                "failed_dir": fix(ib.failed_dir),
            }
        )
        for ib in settings.inbox
    ]
    update: dict[str, Any] = {
        "inbox": inboxes,
        "journal": settings.journal.model_copy(update={"path": fix(settings.journal.path)}),
        "catalogue": settings.catalogue.model_copy(
            update={"cache_path": fix(settings.catalogue.cache_path)}
        ),
        "mvsep": settings.mvsep.model_copy(
            update={"api_token_file": fix(settings.mvsep.api_token_file)}
        ),
    }
    return settings.model_copy(update=update)


def _with_token(settings: Settings, path: Path, env: Mapping[str, str]) -> Settings:
    token: str | None = None
    credential = Path(env.get("CREDENTIALS_DIRECTORY", "")) / CREDENTIAL_NAME
    if env.get(ENV_TOKEN, "").strip():
        token = env[ENV_TOKEN].strip()
    elif env.get("CREDENTIALS_DIRECTORY") and credential.is_file():  # systemd LoadCredential
        token = _read_token_file(credential, path)
    elif settings.mvsep.api_token_file is not None:
        token = _read_token_file(settings.mvsep.api_token_file.expanduser(), path)
    if token is None:
        return settings
    mvsep = settings.mvsep.model_copy(update={"api_token": SecretStr(token)})
    return settings.model_copy(update={"mvsep": mvsep})


def _read_token_file(token_path: Path, path: Path) -> str:
    try:
        text = token_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{path}: [mvsep] api_token_file: cannot read {token_path}: {exc.strerror}"
        ) from None
    if not text:
        raise ConfigError(f"{path}: [mvsep] api_token_file: {token_path} is empty")
    if _readable_by_others(token_path):
        import structlog

        structlog.get_logger(__name__).warning(
            "token file is readable by other users; consider chmod 600",
            token_file=str(token_path),
        )
    return text
