"""Typed client of the MVSEP music-separation API.

``MvsepClient`` (in :mod:`daemon.mvsep.client`) makes the calls; :mod:`daemon.mvsep.models`
holds the lenient pydantic models of the answers; :mod:`daemon.mvsep.failures` is the one
place where foreign failures become :mod:`daemon.errors` errors; :mod:`daemon.mvsep.streams`
streams uploads and resumable downloads.
"""

from daemon.mvsep.client import MvsepClient, RateLimit, RequestGate
from daemon.mvsep.models import (
    Algorithm,
    AlgorithmField,
    CreateResult,
    HistoryEntry,
    InputFile,
    JobStatus,
    QueueInfo,
    RemoteStatus,
    StemFile,
    UserInfo,
)

__all__ = [
    "Algorithm",
    "AlgorithmField",
    "CreateResult",
    "HistoryEntry",
    "InputFile",
    "JobStatus",
    "MvsepClient",
    "QueueInfo",
    "RateLimit",
    "RemoteStatus",
    "RequestGate",
    "StemFile",
    "UserInfo",
]
