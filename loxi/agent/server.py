"""loxi-agent's listening socket: accept, hand each connection to a worker, and keep the books.

The accept loop (socketserver's `serve_forever`, in the agent's main thread)
never waits for the engine: a connection is counted in flight and queued for the
worker pool (loxi.agent.pool) at once, or, when the pool's queue is full,
answered at once with a refusal (`agent-busy`), on which the client and the
shim run the call in-process. Counting at accept, not when a worker starts,
keeps `in_flight` (metrics, /status, and the SIGTERM drain) true for the
requests still queued: a drain waits for them too.

Threads, not asyncio: every worker carries its own network namespace (setns is
per thread) and its own netlink sockets, and pyroute2 is never asked to fork.
"""

from __future__ import annotations

import json
import socket
import socketserver
import time
from typing import Any

from loxi.agent import metrics as am
from loxi.agent.health import AgentState
from loxi.agent.log import AgentLog
from loxi.agent.pool import DEFAULT_WAITING, DEFAULT_WORKERS, WorkerPool
from loxi.agent.protocol import encode_reply
from loxi.agent.served import ServedNetworks

REQUEST_TIMEOUT = 30.0  # default seconds a client may take to send its request: a stuck one frees its worker
LISTEN_BACKLOG = 256  # connections the kernel holds before accept; a full one fails the client's connect (EAGAIN)
COMMANDS = frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"})
Request = tuple[socket.socket, Any]


class AgentServer(socketserver.UnixStreamServer):
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    own_netns: int = -1  # the agent's own namespace, which every worker returns to
    own_netns_id: tuple[int, int] = (0, 0)
    request_timeout: float = REQUEST_TIMEOUT
    metrics: am.AgentMetrics | None = None  # None with --no-metrics (to measure what they cost)
    state: AgentState
    served: ServedNetworks
    log: AgentLog = AgentLog()
    pool: WorkerPool[Request]

    def start_workers(self, workers: int = DEFAULT_WORKERS, waiting: int = DEFAULT_WAITING) -> None:
        self.pool = WorkerPool(self._serve_one, workers, waiting, name="loxi-agent worker")

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        """In the accept loop: queue the connection for a worker, or refuse it now; never wait."""
        self.begin()
        if not self.pool.submit((request, client_address)):
            self._refuse_busy(request)

    def _serve_one(self, item: Request) -> None:
        """In a worker: socketserver's own per-request steps (errors reported, the connection closed)."""
        request, client_address = item
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.end()

    def _refuse_busy(self, request: socket.socket) -> None:
        why = f"{len(self.pool.threads)} workers busy and {self.pool.waiting()} requests waiting"
        self.refused(am.FALLBACK_BUSY, why)  # counted before the refusal goes out, as a served call is
        self.log(f"refused a request: {why}", level="warning")
        try:
            request.setblocking(False)  # a few bytes into an empty socket buffer: never blocks the accept loop
            request.send(encode_reply(1, f"loxi-agent is busy: {why}".encode(), refused=True))
        except OSError:
            pass  # the client sees the connection close before a reply: it runs the call in-process all the same
        self.shutdown_request(request)
        self.end()

    def wants_phases(self) -> bool:
        """Whether a call's engine phases are timed (for the metrics' histograms)."""
        return self.metrics is not None

    def begin(self) -> None:
        with self.state.lock:
            self.state.in_flight += 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()

    def end(self) -> None:
        with self.state.lock:
            self.state.in_flight -= 1
            self.state.lock.notify_all()
        if self.metrics is not None:
            self.metrics.in_flight.dec()

    def refused(self, reason: str, error: str = "") -> None:
        """The client runs this call in-process: count why, and remember an error."""
        if self.metrics is not None:
            self.metrics.fallback(reason)
        if error:
            self.state.note_error(f"request failed ({reason}): {error}")

    def served_call(
        self, environ: dict[str, str], stdin: bytes, rc: int, answer: str, seconds: float, timings: dict, local: bool
    ) -> None:
        """Count a call the engine answered; `local`: the caller runs in the agent's own namespace."""
        command = environ.get("CNI_COMMAND") or "none"
        command = command if command in COMMANDS else "other"
        code = "0"
        if rc != 0:
            code, msg = _error_of(answer)
            self.state.note_error(f"{command} {environ.get('CNI_CONTAINERID', '')}: code {code}: {msg}")
        with self.state.lock:
            self.state.served += 1
        if self.metrics is not None:
            self.metrics.observe_call(command, code, seconds, timings)
        if rc == 0 and command == "ADD":
            self.served.note_add(stdin, local=local)

    def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) for the requests in flight, queued ones included; returns how many are left."""
        deadline = time.monotonic() + timeout
        with self.state.lock:
            while self.state.in_flight and time.monotonic() < deadline:
                self.state.lock.wait(max(0.0, deadline - time.monotonic()))
            return self.state.in_flight


def _error_of(answer: str) -> tuple[str, str]:
    """(the CNI error code, or "unknown"; its msg, at most 500 characters) of a failed call's stdout."""
    try:
        doc = json.loads(answer)
        code, msg = doc.get("code"), str(doc.get("msg", ""))[:500]
    except (ValueError, AttributeError):
        return "unknown", answer[:500]
    return (str(code) if isinstance(code, int) else "unknown"), msg
