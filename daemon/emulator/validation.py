"""Checks of request parameters, answering as the real service does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from daemon.emulator.answers import Answer, error_list, error_message
from daemon.emulator.catalogue import Catalogue, TypeSpec
from daemon.emulator.options import EmulatorOptions

OPTION_FIELDS = tuple(f"add_opt{i}" for i in range(1, 11))  # add_opt1..add_opt10 exist (2026)
ALLOWED_PARAMS: dict[str, frozenset[str]] = {
    "create": frozenset(
        {"api_token", "audiofile", "url", "remote_type", "sep_type", "output_format", "is_demo"}
        | {"webhook_url", "preset_id"}  # undocumented (vendored OpenAPI spec); accepted, unused
        | set(OPTION_FIELDS)
    ),
    "get": frozenset({"hash", "mirror", "api_token"}),
    "get_remote": frozenset({"hash", "api_token"}),
    "cancel": frozenset({"api_token", "hash"}),
    "algorithms": frozenset({"api_token", "lang"}),
    "user": frozenset({"api_token"}),
    "login": frozenset({"email", "password"}),
    "queue": frozenset({"api_token"}),
    "history": frozenset({"api_token", "start", "limit"}),
}
REMOTE_TYPES = frozenset({"direct", "mega", "drive", "dropbox"})
DEFAULT_SEP_TYPE = 11  # the page's default; it no longer exists in the real catalogue
PREMIUM_ONLY_TYPE = "This algorithm is available only for premium users"
PREMIUM_ONLY_FORMAT = "This output format is available only for premium users"


@dataclass(frozen=True)
class CreateRequest:
    """A validated create."""

    spec: TypeSpec
    options: dict[str, str]
    output_format: int
    is_demo: bool
    url: str | None
    remote_type: str | None


def unknown_params(endpoint: str, names: set[str]) -> Answer | None:
    """A 400 naming the parameters ``endpoint`` does not take, or None."""
    unknown = sorted(names - ALLOWED_PARAMS.get(endpoint, frozenset()))
    if unknown:
        return error_message(f"Unknown parameter(s): {', '.join(unknown)}")
    return None


def _int_param(params: Mapping[str, str], name: str, default: int) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def validate_create(
    catalogue: Catalogue, premium: bool, params: Mapping[str, str], has_file: bool
) -> CreateRequest | Answer:
    """Check a create's fields against the served catalogue and the account's plan."""
    sep_type = _int_param(params, "sep_type", DEFAULT_SEP_TYPE)
    spec = catalogue.get(sep_type) if sep_type is not None else None
    if spec is None or not spec.is_active:
        return error_message(f"Invalid sep_type: {params.get('sep_type', DEFAULT_SEP_TYPE)}")
    if spec.premium_only and not premium:
        return error_list(PREMIUM_ONLY_TYPE)
    output_format = _int_param(params, "output_format", 0)
    if output_format is None or not 0 <= output_format <= 5:
        return error_message(f"Invalid output_format: {params.get('output_format')}")
    if output_format in (4, 5) and not premium:
        return error_list(PREMIUM_ONLY_FORMAT)
    options = _options(spec, params)
    if isinstance(options, Answer):
        return options
    source = _source(params, has_file)
    if isinstance(source, Answer):
        return source
    url, remote_type = source
    is_demo = params.get("is_demo", "0").strip().lower() in ("1", "true", "yes", "on")
    return CreateRequest(spec, options, output_format, is_demo, url, remote_type)


def _options(spec: TypeSpec, params: Mapping[str, str]) -> dict[str, str] | Answer:
    """The job's options. An empty (or blank) value means the field's default, as the real
    service takes it; an empty value for a field the type lacks is ignored (public clients
    always send add_opt1..3)."""
    options: dict[str, str] = {}
    for name in OPTION_FIELDS:
        if name not in params:
            continue
        value = params[name]
        field = spec.fields.get(name)
        if not value.strip():
            if field is not None:
                options[name] = field.default
            continue
        if field is None:
            return error_message(f"{name} is not a field of sep_type {spec.render_id}")
        if not field.accepts(value):
            allowed = ", ".join(sorted(field.options))
            return error_message(f"Invalid value {value!r} for {name}; expected one of: {allowed}")
        options[name] = value
    return options


def _source(params: Mapping[str, str], has_file: bool) -> tuple[str | None, str | None] | Answer:
    url = params.get("url", "").strip() or None
    if has_file == (url is not None):
        return error_message("Send exactly one of audiofile or url")
    if url is None:
        return None, None
    remote_type = params.get("remote_type", "direct").strip() or "direct"
    if remote_type not in REMOTE_TYPES:
        return error_message(f"Invalid remote_type: {remote_type}")
    return url, remote_type


def plan_caps(options: EmulatorOptions, premium: bool) -> tuple[int, float]:
    """(max bytes, max seconds) per file for the plan."""
    if premium:
        return options.premium_max_bytes, options.premium_max_seconds
    return options.free_max_bytes, options.free_max_seconds
