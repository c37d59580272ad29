"""loxi-agent's engine processes: the engine on more than one core, behind one socket and one set of books.

One CPython process runs Python on one core at a time (the GIL). In a burst of pods the agent's
engine work (~7 ms of CPU per ADD), not the node's CPUs, set the pace: a burst of 50 ADDs ten at a
time kept the agent ~92% of one core busy while the other had room. So the agent runs the engine
in `--engines N` processes (default: the CPUs it may run on, at most `MAX_DEFAULT_ENGINES`):
itself, and N-1 children that accept on the listening socket they inherit. A child is a fresh
interpreter (`python -m loxi.agent.engine`), not a fork: the agent is threaded by the time it
spawns, and a forked copy of a threaded process can inherit a lock some other thread held.

Each child is a whole engine (its own worker pool, netlink sockets and lease-store watcher: an
inotify queue sees every writer, so nothing needs sharing) and keeps no books: every accepted
connection, refusal and served call is sent to the agent over a socket pair, and the agent's own
bookkeeping counts it (metrics, /status, the networks served, which the reconciler reads). A
refusal or a served call waits for the agent's acknowledgement before its answer goes out, so
whoever has an answer sees the call counted, as for the agent's own calls. The agent restarts a
child that dies (after `RESPAWN_DELAY`), counts its unfinished requests as ended, and on SIGTERM
stops the children with itself; a child dies with the thread that started it (PR_SET_PDEATHSIG).
Logs go straight to the agent's log (one flock per line, see loxi.agent.log).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loxi.agent.handler import Handler
from loxi.agent.health import AgentState
from loxi.agent.log import AgentLog
from loxi.agent.server import AgentServer

if TYPE_CHECKING:
    from loxi.agent.daemon import AgentOptions

MAX_DEFAULT_ENGINES = 4  # each engine is ~40 MB of RSS; bursts on larger nodes are bound by the kernel's rtnl lock
RESPAWN_DELAY = 1.0  # seconds before a dead engine is started again
PR_SET_PDEATHSIG = 1
SEEN_STDINS = 256  # ADD confs a child has sent the agent already (the agent learns a network once)


def default_engines() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_ENGINES))


class EngineServer(AgentServer):
    """An engine child's server: it serves as the agent does and sends its books to the agent."""

    def __init__(self, books: socket.socket, listen_fd: int, phases: bool) -> None:
        super().__init__("", Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket.socket(fileno=listen_fd)
        self.socket.setblocking(False)  # the agent and the other engines accept on it too
        self.books = books
        self.write_lock = threading.Lock()
        self.ack_lock = threading.Lock()
        self.phases = phases
        self.seen: set[tuple[bytes, bool]] = set()  # (digest of an ADD's conf, local) sent already
        self.state = AgentState()  # only in_flight, for this child's own drain

    def wants_phases(self) -> bool:
        return self.phases

    def begin(self) -> None:
        super().begin()
        self._send({"e": "begin"})

    def end(self) -> None:
        super().end()
        self._send({"e": "end"})

    def refused(self, reason: str, error: str = "") -> None:
        self._send({"e": "refused", "reason": reason, "error": error}, ack=True)

    def served_call(
        self, environ: dict[str, str], stdin: bytes, rc: int, answer: str, seconds: float, timings: dict, local: bool
    ) -> None:
        event: dict[str, Any] = {
            "e": "served",
            "env": {k: environ[k] for k in ("CNI_COMMAND", "CNI_CONTAINERID") if k in environ},
            "rc": rc,
            "answer": answer if rc != 0 else "",
            "seconds": seconds,
            "timings": timings,
            "local": local,
        }
        key = (hashlib.blake2b(stdin, digest_size=16).digest(), local)
        if rc == 0 and environ.get("CNI_COMMAND") == "ADD" and key not in self.seen:
            event["stdin"] = base64.b64encode(stdin).decode()
            if len(self.seen) >= SEEN_STDINS:
                self.seen.clear()
            self.seen.add(key)
        self._send(event, ack=True)

    def _send(self, event: dict[str, Any], ack: bool = False) -> None:
        """One line to the agent; with `ack`, wait until the agent has applied it. One acknowledged line
        is outstanding at a time (so the byte read back is this line's), while others may still be
        written (the accept loop's `begin` never waits for an acknowledgement)."""
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        try:
            if not ack:
                with self.write_lock:
                    self.books.sendall(line)
                return
            with self.ack_lock:
                with self.write_lock:
                    self.books.sendall(line)
                self.books.recv(1)
        except OSError:
            pass  # the agent is gone: PR_SET_PDEATHSIG ends this process


@dataclass
class _Slot:
    """One engine child the agent keeps running, with the books it relays."""

    index: int
    proc: subprocess.Popen | None = None
    outstanding: int = 0  # accepted and not yet ended: counted as ended if the child dies
    pid: int = 0
    starts: int = 0
    served: int = 0
    serving: bool = False


class Engines:
    """The agent's side: spawn `count - 1` children, apply their books to `server`, restart the dead."""

    def __init__(self, server: AgentServer, options: AgentOptions, count: int) -> None:
        self.server = server
        self.options = options
        self.slots = [_Slot(i) for i in range(2, count + 1)]
        self.count = count
        self.stopping = False

    def start(self) -> None:
        for slot in self.slots:
            # The thread that starts a child lives as long as the slot: PR_SET_PDEATHSIG is tied to it.
            threading.Thread(target=self._keep, args=(slot,), name=f"engine {slot.index}", daemon=True).start()

    def report(self) -> list[dict[str, Any]]:
        """Each engine for /status: this process first; a child's pid, calls served and starts."""
        children = [
            {"engine": s.index, "pid": s.pid, "serving": s.serving, "requests_served": s.served, "starts": s.starts}
            for s in self.slots
        ]
        own = self.server.state.served - sum(s.served for s in self.slots)
        return [{"engine": 1, "pid": os.getpid(), "serving": True, "requests_served": own, "starts": 1}, *children]

    def _argv(self, listen_fd: int, books_fd: int) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", "loxi.agent.engine", "--listen-fd", str(listen_fd), "--books-fd", str(books_fd)]
        argv += ["--parent-pid", str(os.getpid()), "--request-timeout", repr(o.request_timeout)]
        argv += ["--workers", str(o.workers), "--max-waiting", str(o.max_waiting)]
        argv += ["--drain-timeout", repr(o.drain_timeout)]
        argv += ["--log-file", o.log.path, "--log-file-max-size", str(o.log.max_size)]
        argv += ["--log-file-max-count", str(o.log.max_count)]
        return argv + ([] if o.metrics else ["--no-metrics"])

    def _keep(self, slot: _Slot) -> None:
        log = self.options.log
        while not self.stopping:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            listen_fd = self.server.socket.fileno()
            try:
                slot.proc = subprocess.Popen(
                    self._argv(listen_fd, theirs.fileno()),
                    pass_fds=(listen_fd, theirs.fileno()),
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                log(f"engine {slot.index} could not start: {exc}", level="error")
                ours.close()
                theirs.close()
                time.sleep(RESPAWN_DELAY)
                continue
            finally:
                theirs.close()
            slot.pid, slot.starts = slot.proc.pid, slot.starts + 1
            self._relay(slot, ours)
            ours.close()
            slot.serving = False
            rc = slot.proc.wait()
            for _ in range(slot.outstanding):
                self.server.end()
            slot.outstanding = 0
            if not self.stopping:
                self.server.state.note_error(f"engine {slot.index} (pid {slot.pid}) exited with status {rc}")
                log(f"engine {slot.index} (pid {slot.pid}) exited with status {rc}; restarting", level="error")
                time.sleep(RESPAWN_DELAY)

    def _relay(self, slot: _Slot, books: socket.socket) -> None:
        server = self.server
        with books.makefile("rb") as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("e")
                if kind == "begin":
                    slot.outstanding += 1
                    server.begin()
                elif kind == "end":
                    slot.outstanding -= 1
                    server.end()
                elif kind == "ready":
                    slot.serving = True
                    self.options.log(f"engine {slot.index} of {self.count} serving (pid {slot.pid})")
                elif kind == "refused":
                    server.refused(str(event.get("reason", "")), str(event.get("error", "")))
                    _ack(books)
                elif kind == "served":
                    # No stdin: this child sent the same ADD conf before (the agent knows the network).
                    stdin = base64.b64decode(event["stdin"]) if "stdin" in event else b""
                    server.served_call(
                        event.get("env") or {},
                        stdin,
                        int(event.get("rc", 1)),
                        str(event.get("answer", "")),
                        float(event.get("seconds", 0.0)),
                        event.get("timings") or {},
                        bool(event.get("local")),
                    )
                    slot.served += 1
                    _ack(books)

    def stop(self) -> None:
        """SIGTERM to every child: each stops accepting, finishes what it holds (its drain) and exits."""
        self.stopping = True
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(OSError):
                    slot.proc.send_signal(signal.SIGTERM)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()


def _ack(books: socket.socket) -> None:
    with contextlib.suppress(OSError):
        books.sendall(b".")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loxi.agent.engine", description="one of loxi-agent's engines")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--books-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--request-timeout", type=float, required=True)
    parser.add_argument("--drain-timeout", type=float, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--max-waiting", type=int, required=True)
    parser.add_argument("--log-file", default="")
    parser.add_argument("--log-file-max-size", type=int, required=True)
    parser.add_argument("--log-file-max-count", type=int, required=True)
    parser.add_argument("--no-metrics", action="store_true")
    args = parser.parse_args(argv)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != args.parent_pid:
        return  # the agent died before the line above
    from loxi.agent.daemon import load_engine

    load_engine()
    books = socket.socket(fileno=args.books_fd)
    server = EngineServer(books, args.listen_fd, phases=not args.no_metrics)
    server.request_timeout = args.request_timeout
    server.log = AgentLog(args.log_file, args.log_file_max_size, args.log_file_max_count)
    server.own_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    own = os.fstat(server.own_netns)
    server.own_netns_id = (own.st_dev, own.st_ino)
    server.start_workers(args.workers, args.max_waiting)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server._send({"e": "ready"})
    try:
        server.serve_forever()
    finally:
        server.drain(args.drain_timeout)
        books.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
