"""Structured command logs for loxi-cni: one JSON line per CNI command, to a file, off by default.

Where: the conf's `logFile` (with `logLevel`), else the environment's
`LOXI_LOG_FILE` (with `LOXI_LOG_LEVEL`); neither set, nothing is logged. The
line never goes to stdout (stdout carries only the plugin's one JSON document),
and logging can never fail or slow down a command beyond one append: every
error while logging is swallowed (an OSError is noted on stderr). The log file
must be a regular file: a FIFO (whose open would block the command for ever)
or a device at that path is refused, never opened (intent.safe_io).

Size: the file rotates (`logFileMaxSize` bytes, or `LOXI_LOG_FILE_MAX_SIZE`,
default 10 MiB; `logFileMaxCount` old files kept, or `LOXI_LOG_FILE_MAX_COUNT`,
default 5), under an flock every writer takes (loxi.logrotate). A W3C trace
context in the environment (`TRACEPARENT`, which libcni passes on from its
caller) is written into the line as `traceparent`, so a pod's CNI calls can be
found from the runtime's trace.

Levels: `error` logs failed commands, `warning` the same, `info` (default)
every ADD/DEL/CHECK/GC/STATUS, `debug` also VERSION and each plan step.

Only the standard library is imported here, so wrapping `loxi.plugin.cni.run` keeps
VERSION as cheap as before. Use:

    @logged                     # on loxi.plugin.cni.run
    note_plan(plan)             # wherever a command has its Plan
"""

from __future__ import annotations

import contextvars
import os
import time

# typing costs VERSION ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

ENV_FILE = "LOXI_LOG_FILE"
ENV_LEVEL = "LOXI_LOG_LEVEL"
ENV_MAX_SIZE = "LOXI_LOG_FILE_MAX_SIZE"
ENV_MAX_COUNT = "LOXI_LOG_FILE_MAX_COUNT"
TRACEPARENT = "TRACEPARENT"
MAX_TRACEPARENT = 256
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
DEFAULT_LEVEL = "info"

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("loxi_cnilog", default=None)


def _json():
    import json

    return json


class _TeeIn:
    """Records what the command reads from stdin (it reads it all, once)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.data = b""

    def read(self, *args: Any) -> bytes:
        chunk = self._stream.read(*args)
        if isinstance(chunk, bytes):
            self.data += chunk
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _TeeOut:
    """Records what the command writes to stdout, passing every write straight through."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def note_plan(plan: Any) -> Any:
    """Attach the command's plan to its log line; returns `plan` so it can wrap a call."""
    try:
        record = _current.get()
        if record is not None and plan is not None:
            record["plan"] = plan
    except Exception:
        pass
    return plan


def logged(run: Callable[..., int]) -> Callable[..., int]:
    """Wrap `run(environ, stdin, stdout, stderr) -> int` so each call logs one line when enabled."""

    def wrapper(environ: Mapping[str, str], stdin: Any, stdout: Any, stderr: Any) -> int:
        try:
            tee_in, tee_out = _TeeIn(stdin), _TeeOut(stdout)
            record: dict[str, Any] = {}
            token = _current.set(record)
            start = time.monotonic()
        except Exception:
            return run(environ, stdin, stdout, stderr)
        rc = 1
        try:
            rc = run(environ, tee_in, tee_out, stderr)
            return rc
        finally:
            try:
                _current.reset(token)
                _emit(environ, tee_in.data, "".join(tee_out.parts), rc, time.monotonic() - start, record)
            except OSError as exc:  # said on stderr (the runtime's log), never on stdout, never fatal
                try:  # noqa: SIM105 (contextlib is an import VERSION would pay for)
                    stderr.write(f"loxi-cni: command not logged: {exc.strerror or exc}\n")
                except Exception:
                    pass
            except Exception:
                pass

    # functools.wraps by hand: functools pulls collections into every VERSION call
    wrapper.__wrapped__ = run  # type: ignore[attr-defined]
    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = run.__name__, run.__qualname__, run.__doc__
    wrapper.__module__ = run.__module__
    return wrapper


def _destination(environ: Mapping[str, str], conf: Mapping[str, Any]) -> tuple[str, str]:
    path = conf.get("logFile") if isinstance(conf.get("logFile"), str) else ""
    level = conf.get("logLevel") if path else ""
    if not path:
        path = environ.get(ENV_FILE) or os.environ.get(ENV_FILE) or ""
        level = environ.get(ENV_LEVEL) or os.environ.get(ENV_LEVEL) or ""
    return path, (level if level in LEVELS else DEFAULT_LEVEL)


def _bounds(environ: Mapping[str, str], conf: Mapping[str, Any]) -> tuple[int, int]:
    """(max size, max count) of the log: the conf's keys, else the environment's, else the defaults."""
    from loxi.logrotate import parse_count, parse_size

    size = conf.get("logFileMaxSize")
    count = conf.get("logFileMaxCount")
    if size is None:
        size = environ.get(ENV_MAX_SIZE) or os.environ.get(ENV_MAX_SIZE)
    if count is None:
        text = environ.get(ENV_MAX_COUNT) or os.environ.get(ENV_MAX_COUNT) or ""
        count = int(text) if text.isdigit() else None
    return parse_size(size), parse_count(count)


def traceparent(environ: Mapping[str, str]) -> str | None:
    """The caller's W3C trace context, when it looks like one (printable ASCII, bounded)."""
    value = environ.get(TRACEPARENT)
    if not value or len(value) > MAX_TRACEPARENT or not all(" " < c < "\x7f" for c in value):
        return None
    return value


def build_line(
    environ: Mapping[str, str], stdin: bytes, stdout: str, rc: int, seconds: float, record: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """The log line's fields and its level number."""
    try:
        conf = _json().loads(stdin) if stdin else {}
        conf = conf if isinstance(conf, dict) else {}
    except ValueError:
        conf = {}
    command = environ.get("CNI_COMMAND", "")
    line: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
        "level": "info" if rc == 0 else "error",
        "command": command,
        "containerID": environ.get("CNI_CONTAINERID", ""),
        "netns": environ.get("CNI_NETNS", ""),
        "ifname": environ.get("CNI_IFNAME", ""),
        "network": conf.get("name", "") if isinstance(conf.get("name", ""), str) else "",
        "cniVersion": conf.get("cniVersion", ""),
        "durationMs": round(seconds * 1000, 1),
        "pid": os.getpid(),
        "rc": rc,
    }
    trace = traceparent(environ)
    if trace:
        line["traceparent"] = trace
    try:
        output = _json().loads(stdout) if stdout.strip() else None
    except ValueError:
        output = None
    if rc != 0 and isinstance(output, dict):
        line["code"] = output.get("code")
        line["msg"] = output.get("msg", "")
        if output.get("details"):
            line["details"] = output["details"]
    elif command == "ADD" and isinstance(output, dict):
        ips = [ip.get("address") for ip in output.get("ips", []) if isinstance(ip, dict)]
        if not ips:  # 0.1.0 / 0.2.0 results
            ips = [(output.get(k) or {}).get("ip") for k in ("ip4", "ip6") if isinstance(output.get(k), dict)]
        line["ips"] = [ip for ip in ips if ip]
    plan = record.get("plan")
    if plan is not None:
        summary = getattr(plan, "summary", None)
        line["plan"] = summary() if callable(summary) else str(plan)
    level = LEVELS[line["level"]] if command != "VERSION" else LEVELS["debug"]
    return line, level


def _emit(environ: Mapping[str, str], stdin: bytes, stdout: str, rc: int, seconds: float, record: dict) -> None:
    if not environ.get("CNI_COMMAND"):
        return
    try:
        conf = _json().loads(stdin) if stdin else {}
    except ValueError:
        conf = {}
    path, threshold = _destination(environ, conf if isinstance(conf, dict) else {})
    if not path:
        return
    line, level = build_line(environ, stdin, stdout, rc, seconds, record)
    if level < LEVELS[threshold]:
        return
    if threshold == "debug" and record.get("plan") is not None:
        steps = getattr(record["plan"], "steps", ())
        line["steps"] = [step.describe() for step in steps if hasattr(step, "describe")]
    data = (_json().dumps(line, sort_keys=False, default=str) + "\n").encode()
    from loxi.logrotate import append_line  # one write of one line, under the rotation's flock

    append_line(path, data, *_bounds(environ, conf if isinstance(conf, dict) else {}))
