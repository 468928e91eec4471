"""MVSEP output formats: the API's numbers, the names users write in config, file extensions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputFormat:
    code: int  # the API's `output_format` value
    name: str  # the config name
    ext: str  # file extension of the stems, without the dot
    label: str  # what MVSEP reports in `data.output_format`
    premium_only: bool = False


OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat(0, "mp3", "mp3", "mp3 (320 kbps)"),
    OutputFormat(1, "wav16", "wav", "wav (16 bit)"),
    OutputFormat(2, "flac16", "flac", "flac (16 bit)"),
    OutputFormat(3, "m4a", "m4a", "m4a (lossy)"),
    OutputFormat(4, "wav32", "wav", "wav (32 bit float)", premium_only=True),
    OutputFormat(5, "flac24", "flac", "flac (24 bit)", premium_only=True),
)
BY_NAME = {f.name: f for f in OUTPUT_FORMATS}
BY_CODE = {f.code: f for f in OUTPUT_FORMATS}


def parse_output_format(value: str | int) -> OutputFormat:
    """Accept a name (``"flac24"``), a number (5) or a numeric string (``"5"``)."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        code = int(value)
        if code in BY_CODE:
            return BY_CODE[code]
        raise ValueError(f"unknown output format {code}; expected one of {sorted(BY_CODE)}")
    key = value.strip().lower()
    if key in BY_NAME:
        return BY_NAME[key]
    names = ", ".join(f.name for f in OUTPUT_FORMATS)
    raise ValueError(f"unknown output format {value!r}; expected one of: {names}")
