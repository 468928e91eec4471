"""The ``[http]`` config section: the status page and health server (:mod:`daemon.http`).

Part of :mod:`daemon.config` (the only reader of config files and the environment), kept
apart so that module stays small. ``listen = ""`` (the default) runs no server. Any address
that is not loopback needs ``allow_remote = true`` and then a token, read like the API
token: ``$MVSEP_WATCH_HTTP_TOKEN``, else ``token_file``, else ``token``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

ENV_HTTP_TOKEN = "MVSEP_WATCH_HTTP_TOKEN"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def split_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"``, ``"[::1]:8787"``, ``"localhost:8787"`` -> (host, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8787 or [::1]:8787")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = ""
    """``HOST:PORT`` of the status page and health server; empty: no server."""
    allow_remote: bool = False
    token: SecretStr | None = None
    token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.strip():
            split_listen(value)
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        return split_listen(self.listen) if self.listen else None

    @property
    def remote(self) -> bool:
        """Whether the server listens beyond loopback (then every page but /livez needs
        the token)."""
        address = self.address
        return address is not None and not is_loopback(address[0])

    def secret(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None


def resolve_http(
    section: HttpSection, *, config_path: Path, env: Mapping[str, str]
) -> tuple[HttpSection, list[str]]:
    """The section with its token read (env, file, config) and its rules checked: one line
    per problem, naming the file and the key."""
    where = f"{config_path}: [http]"
    problems: list[str] = []
    token: str | None = env.get(ENV_HTTP_TOKEN, "").strip() or None
    token_file = section.token_file
    if token_file is not None:
        token_file = token_file.expanduser()
        if not token_file.is_absolute():
            token_file = config_path.absolute().parent / token_file
        if token is None:
            try:
                token = token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                problems.append(f"{where} token_file: cannot read {token_file}: {exc.strerror}")
            else:
                if token is None:
                    problems.append(f"{where} token_file: {token_file} is empty")
    update: dict[str, object] = {"token_file": token_file}
    if token is not None:
        update["token"] = SecretStr(token)
    resolved = section.model_copy(update=update)
    if resolved.remote and not resolved.allow_remote:
        problems.append(
            f"{where} listen: {resolved.listen} is not a loopback address — listen on "
            "127.0.0.1 or [::1], or set allow_remote = true (and a token)"
        )
    elif resolved.remote and not resolved.secret() and not problems:
        problems.append(
            f"{where} token: listening beyond loopback needs a token — set "
            f"${ENV_HTTP_TOKEN}, [http] token_file, or [http] token"
        )
    return resolved, problems
