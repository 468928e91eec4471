"""Typed, lenient models of MVSEP API answers.

The real API is loose: numbers arrive as strings (``"premium_minutes": "54"``), booleans as
``0``/``1``, sizes as human strings (``"5.70 MB"``), option tables and stem lists as
JSON-encoded strings, urls with escaped slashes. Every model ignores unknown fields and
coerces these shapes, so a new server field never breaks the daemon; a missing *essential*
field (a create without a hash) still fails validation.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# ---------------------------------------------------------------------------------------------
# coercion helpers


def _to_int_or_none(value: Any) -> Any:
    """``"3"``, ``3.0``, ``"3.0"`` -> 3; ``""``/``None`` -> None; anything else unchanged."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    return value


def _to_float_or_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _to_str_or_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


def _to_bool(value: Any) -> Any:
    if value is None or value == "":
        return False
    return value


def unescape_url(value: Any) -> Any:
    r"""Turn ``https:\/\/host\/x`` into ``https://host/x``; ``None`` -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\\/", "/")
    return value


def _json_decoded(value: Any) -> Any:
    """Decode a JSON-encoded string; ``None``/``""``/invalid JSON -> ``None``."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _to_str_dict(value: Any) -> dict[str, str]:
    """A ``{key: label}`` table from a JSON string, a dict or a list (keys become strings)."""
    decoded = _json_decoded(value)
    if isinstance(decoded, dict):
        return {str(k): "" if v is None else str(v) for k, v in decoded.items()}
    if isinstance(decoded, list):
        return {str(i): "" if v is None else str(v) for i, v in enumerate(decoded)}
    return {}


def _to_str_list(value: Any) -> list[str]:
    """A list of names from a JSON string, a list, or a dict (its keys)."""
    decoded = _json_decoded(value)
    if isinstance(decoded, list):
        return [str(v) for v in decoded if v is not None]
    if isinstance(decoded, dict):
        return [str(k) for k in decoded]
    return []


def _to_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    return value


LaxInt = Annotated[int | None, BeforeValidator(_to_int_or_none)]
LaxFloat = Annotated[float | None, BeforeValidator(_to_float_or_none)]
LaxStr = Annotated[str | None, BeforeValidator(_to_str_or_none)]
LaxBool = Annotated[bool, BeforeValidator(_to_bool)]
Url = Annotated[str, BeforeValidator(unescape_url)]
StrDict = Annotated[dict[str, str], BeforeValidator(_to_str_dict)]
StrList = Annotated[list[str], BeforeValidator(_to_str_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# separation


class CreateResult(_Model):
    """Answer of ``POST /api/separation/create``: the job's ``hash`` and its ``link``."""

    hash: str = Field(min_length=1)
    link: Url = ""


class StemFile(_Model):
    """One output file of a done job. ``size`` is a human string (``"5.70 MB"``).

    The waveform ``peaks`` array the service may send beside these fields (thousands of
    numbers per file) is dropped at parse time (``extra="ignore"``): a job's status holds
    no peaks, whatever their size.
    """

    type: str = ""
    url: Url = ""
    size: LaxStr = None
    download: LaxStr = None


class InputFile(_Model):
    """The job's input as stored by MVSEP."""

    url: Url = ""
    size: LaxStr = None
    download: LaxStr = None


class JobStatus(_Model):
    """Answer of ``GET /api/separation/get``, flattened: top-level ``status`` + ``data``.

    ``status`` is one of ``waiting``, ``processing``, ``distributing``, ``merging``,
    ``done``, ``failed`` (``not_found`` is raised as :class:`~daemon.errors.ApiNotFound`).
    """

    status: str
    message: LaxStr = None
    queue_count: LaxInt = None
    current_order: LaxInt = None
    finished_chunks: LaxInt = None
    all_chunks: LaxInt = None
    algorithm: LaxStr = None
    output_format: LaxStr = None
    size: LaxStr = None
    date: LaxStr = None
    files: Annotated[list[StemFile], BeforeValidator(_to_list)] = []
    input_file: InputFile | None = None
    tags: dict[str, Any] | None = None

    @property
    def is_finished(self) -> bool:
        """Done *and* every output file has a url (``done`` can precede the files)."""
        return self.status == "done" and bool(self.files) and all(f.url for f in self.files)

    @property
    def is_failed(self) -> bool:
        """The job failed at MVSEP; ``message`` holds the reason."""
        return self.status == "failed"


class RemoteStatus(_Model):
    """Answer of ``GET /api/separation/get-remote`` for a url-submitted job.

    When ``status == "done"``, ``hash`` is the real separation hash to pass to ``get``.
    """

    status: str
    message: LaxStr = None
    queue_count: LaxInt = None
    current_order: LaxInt = None
    link: Url = ""
    hash: LaxStr = None


# ---------------------------------------------------------------------------------------------
# catalogue


class PriceRule(_Model):
    """One of a field's ``price_rules``: choosing ``option_key`` multiplies the price by
    ``value`` (``mode: "multiplier"``, the only mode seen; others are ignored)."""

    option_key: LaxStr = None
    mode: LaxStr = None
    value: LaxFloat = None


class AlgorithmField(_Model):
    """One ``add_optN`` field of a separation type; ``options`` maps key -> label."""

    name: str
    text: str = ""
    options: StrDict = {}
    default_key: LaxStr = None
    input_type: str = "select"
    required: LaxBool = False
    price_rules: Annotated[list[PriceRule], BeforeValidator(_to_list)] = []

    def multiplier_for(self, key: str) -> float:
        """The price multiplier of choosing ``key`` (1 without a rule for it)."""
        factor = 1.0
        for rule in self.price_rules:
            if rule.mode == "multiplier" and rule.option_key == key and rule.value is not None:
                factor *= rule.value
        return factor


class Algorithm(_Model):
    """One separation type of ``/api/app/algorithms``. ``render_id`` is the ``sep_type``."""

    id: LaxInt = None
    render_id: int
    name: str
    price_coefficient: float = 1.0
    is_active: LaxBool = True
    orientation: int = 0
    fields: Annotated[list[AlgorithmField], BeforeValidator(_to_list)] = Field(
        default=[], alias="algorithm_fields"
    )
    output_stems: StrList = []
    outputs: StrDict = {}
    description: LaxStr = None
    group: LaxStr = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and "group" not in data:
            group = data.get("algorithm_group")
            if isinstance(group, dict):
                data = {**data, "group": group.get("name")}
        return data

    @property
    def premium_only(self) -> bool:
        """Types with ``orientation == 2`` need a premium account."""
        return self.orientation == 2

    def price_multiplier(self, options: dict[str, str]) -> float:
        """The product of the chosen options' ``price_rules`` multipliers (1: none)."""
        factor = 1.0
        for fld in self.fields:
            if fld.name in options:
                factor *= fld.multiplier_for(options[fld.name])
        return factor


# ---------------------------------------------------------------------------------------------
# account


class UserInfo(_Model):
    """Answer of ``GET /api/app/user`` (the token it echoes is dropped, never stored)."""

    name: str = ""
    email: str = ""
    premium_minutes: float = 0.0
    premium_enabled: LaxBool = False
    long_filenames_enabled: LaxBool = False
    current_queue: LaxInt = None

    @model_validator(mode="before")
    @classmethod
    def _drop_token(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "api_token"}
            if data.get("premium_minutes") in (None, ""):
                data["premium_minutes"] = 0.0
        return data


class HistoryEntry(_Model):
    """One row of ``/api/app/separation_history`` (``time_left`` in seconds, may be < 0)."""

    hash: str
    job_exists: LaxBool = False
    credits: LaxFloat = None
    time_left: LaxInt = None
    created_at: LaxStr = None
    algorithm_name: LaxStr = None
    render_id: LaxInt = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_algorithm(cls, data: Any) -> Any:
        if isinstance(data, dict):
            algo = data.get("algorithm")
            if isinstance(algo, dict):
                data = {
                    **data,
                    "algorithm_name": data.get("algorithm_name", algo.get("name")),
                    "render_id": data.get("render_id", algo.get("render_id")),
                }
            elif isinstance(algo, str):
                data = {**data, "algorithm_name": data.get("algorithm_name", algo)}
        return data


class QueueInfo(_Model):
    """Answer of ``GET /api/app/queue``: queue lengths per plan and this user's plan queue.

    The shape is undocumented, so both are kept as received.
    """

    queue: Any = None
    plan: Any = None
