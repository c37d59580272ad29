"""loxi-agent's own log: JSON lines to a size-rotated file (`--log-file`), else text on stderr.

The same rotation as the plugin's structured log (loxi.logrotate, one flock
per line), so the agent and in-process runs may even share one file. A line
that cannot be written is said on stderr and never stops the agent.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from loxi.logrotate import DEFAULT_MAX_COUNT, DEFAULT_MAX_SIZE, append_line


@dataclass(frozen=True)
class AgentLog:
    path: str = ""
    max_size: int = DEFAULT_MAX_SIZE
    max_count: int = DEFAULT_MAX_COUNT

    def __call__(self, msg: str, level: str = "info", **fields: Any) -> None:
        if not self.path:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            print(f"loxi-agent: {msg}{extra}", file=sys.stderr, flush=True)
            return
        stamp = time.time()
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}Z",
            "level": level,
            "component": "loxi-agent",
            "pid": os.getpid(),
            "msg": msg,
            **fields,
        }
        try:
            append_line(self.path, (json.dumps(line, default=str) + "\n").encode(), self.max_size, self.max_count)
        except OSError as exc:
            print(f"loxi-agent: {msg} (log {self.path} not written: {exc})", file=sys.stderr, flush=True)

    def raw(self, text: str) -> None:
        """The engine's stderr for one request (its warnings), as one entry."""
        if not self.path:
            sys.stderr.write(text)
            return
        self(text.rstrip("\n"), level="warning", source="engine")
