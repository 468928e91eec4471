"""A local emulator of the MVSEP API: a real HTTP server, clock-driven jobs, real stems.

See ``docs/emulator.md``.
"""

from __future__ import annotations

from daemon.emulator.faults import Fault, parse_fault_spec
from daemon.emulator.options import EmulatorOptions
from daemon.emulator.server import EmulatorServer

__all__ = ["EmulatorOptions", "EmulatorServer", "Fault", "parse_fault_spec"]
