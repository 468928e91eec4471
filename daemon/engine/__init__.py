"""The job engine, one module per job state (the diagram in ``daemon.jobs`` is the map).

* ``scheduler`` — the :class:`Engine`: thread, condition, worker pool, slots; ``tick(now)``
* ``prepare`` (ready) · ``submit`` (submitting) · ``poll`` (queued) · ``deliver``
  (downloading) · ``dispose`` (after filed / failed)
* ``retry`` — PURE: exception → next state (the one error policy)
* ``outputs`` — PURE: template fields, collisions, sidecar
* ``context`` — what the steps share; ``settings`` — :class:`EngineSettings`
"""

from daemon.clock import SystemClock
from daemon.engine.scheduler import Engine
from daemon.engine.settings import EngineSettings

__all__ = ["Engine", "EngineSettings", "SystemClock"]
