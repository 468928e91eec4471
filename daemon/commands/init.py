"""stub"""

from daemon.commands import SubParsers


def register(sub: SubParsers) -> None:
    pass
