"""loxi-agent's HTTP side: /metrics, /healthz, /readyz and /status, on TCP or a unix socket.

/metrics is prometheus_client's own WSGI app over the agent's registry. The
others answer from `AgentState`, which the agent updates as it starts, serves
and stops:

- /healthz: 200 while the process serves requests (the listening loop runs).
- /readyz: 200 once the engine is imported, the socket listens, the node's
  kernel features were probed and the IPAM store is writable, and 503 (with the
  checks that fail) before that and from the moment SIGTERM arrives: the
  kubelet stops counting on the agent while it finishes its in-flight calls.
- /status: JSON for `loxi-plan show`: up since, requests served, last error,
  in-flight requests, and what the reconciler would reclaim and when.

The servers are wsgiref's (as prometheus_client's own start_http_server uses),
threaded, with request logging silenced; a unix-socket address is a root-only
socket file (0600 in a 0700 directory), like the agent's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

READY_ENGINE = "engine imported"
READY_SOCKET = "socket listening"
READY_KERNEL = "kernel features probed"
READY_STORE = "IPAM store writable"
READY_CHECKS = (READY_ENGINE, READY_SOCKET, READY_KERNEL)


@dataclass
class AgentState:
    """What the agent knows about itself, for /readyz and /status. Updated under `lock`."""

    started: float = field(default_factory=time.time)
    ready: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(READY_CHECKS, False))
    kernel_features: dict[str, bool] = field(default_factory=dict)
    serving: bool = False
    draining: bool = False
    served: int = 0
    in_flight: int = 0
    last_error: str | None = None
    last_error_time: float | None = None
    store_dirs: Callable[[], Iterable[str]] = tuple  # the IPAM data dirs /readyz must be able to write
    reconcile: Callable[[], dict[str, Any]] = dict  # the reconciler's report for /status
    engines: Callable[[], list[dict[str, Any]]] = list  # the engine processes, for /status (loxi.agent.engine)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def note_error(self, message: str) -> None:
        with self.lock:
            self.last_error, self.last_error_time = message, time.time()

    def readiness(self) -> dict[str, bool]:
        checks = dict(self.ready)
        checks[READY_STORE] = all(store_writable(d) for d in self.store_dirs())
        checks["not shutting down"] = not self.draining
        return checks

    def status(self) -> dict[str, Any]:
        with self.lock:
            doc: dict[str, Any] = {
                "up_since": _iso(self.started),
                "up_since_unix": self.started,
                "pid": os.getpid(),
                "requests_served": self.served,
                "in_flight": self.in_flight,
                "draining": self.draining,
                "last_error": self.last_error,
                "last_error_time": _iso(self.last_error_time) if self.last_error_time else None,
                "kernel_features": dict(self.kernel_features),
            }
        doc["ready"] = self.readiness()
        doc["reconciler"] = self.reconcile()
        doc["engines"] = self.engines()
        return doc


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def store_writable(directory: str) -> bool:
    """Can a file be made (and removed) in the IPAM data dir? It is made if missing, as an ADD would."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=directory, prefix=".loxi-agent-ready.")
        os.close(fd)
        os.unlink(path)
        return True
    except OSError:
        return False


def make_app(state: AgentState, registry: Any) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def reply(start_response: Callable[..., Any], status: str, doc: Any) -> list[bytes]:
        body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            ok = state.serving
            return reply(start_response, "200 OK" if ok else "503 Service Unavailable", {"serving": ok})
        if path == "/readyz":
            checks = state.readiness()
            ok = all(checks.values())
            return reply(start_response, "200 OK" if ok else "503 Service Unavailable", {"ready": ok, **checks})
        if path == "/status":
            return reply(start_response, "200 OK", state.status())
        return reply(start_response, "404 Not Found", {"error": f"no such endpoint {path}"})

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TcpServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server on a unix socket: bind to the path, and give wsgiref the host/port it expects."""

    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


def parse_address(address: str) -> tuple[str, int] | str:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) or an absolute unix socket path."""
    if address.startswith("/"):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-address {address!r}: want HOST:PORT or an absolute socket path")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpEndpoint:
    """One listening HTTP server, in a thread of its own."""

    def __init__(self, address: str, app: Callable[..., Iterable[bytes]]) -> None:
        where = parse_address(address)
        self.path = where if isinstance(where, str) else None
        if self.path is not None:
            directory = os.path.dirname(self.path) or "."
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            old_umask = os.umask(0o177)
            try:
                self.server: WSGIServer = _UnixServer(self.path, _QuietHandler)
            finally:
                os.umask(old_umask)
        else:
            host, port = where
            server_class = _TcpServer
            if ":" in host:
                server_class = type("_Tcp6Server", (_TcpServer,), {"address_family": socket.AF_INET6})
            self.server = server_class((host, port), _QuietHandler)
        self.server.set_app(app)
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"http {address}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
