"""Per-call phase timings (IPAM, plan, apply) that loxi-agent turns into histograms.

The engine marks its phases with `with phase("ipam"): ...`. Nothing is timed
unless the calling thread asked for it with `record()` (loxi-agent does, per
request): in-process runs pay one context-variable read per phase and import
nothing beyond built-ins, so the plugin's cold path stays as it was.
"""

from __future__ import annotations

import contextvars
import time

_recorder: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("loxi_phases", default=None)


def record() -> dict[str, float]:
    """Start timing this thread's phases; the dict fills with seconds per phase."""
    timings: dict[str, float] = {}
    _recorder.set(timings)
    return timings


def stop() -> None:
    _recorder.set(None)


class phase:
    """Add the block's wall time to the current recording under `name`, if there is one."""

    __slots__ = ("name", "start", "timings")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.timings = _recorder.get()
        if self.timings is not None:
            self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.timings is not None:
            self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
