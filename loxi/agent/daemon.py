"""`loxi-agent`: a node daemon that keeps the engine imported and answers loxi-cni.

A cold loxi-cni pays ~0.5 s of imports (pyroute2, networkx, jsonschema) per
pod. The agent pays them once. Each request runs in its own thread, which first
enters the caller's network namespace (the descriptor the client sent) and then
runs exactly the in-process entry point, `loxi.plugin.cni.run`: one code path, the same
locks, so the agent and in-process runs can act on one node at once.

Threads, not asyncio: every thread carries its own network namespace (setns is
per thread) and its own netlink sockets, and pyroute2 is never asked to fork.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

from applier import caller_netns
from applier.netns import _setns
from loxi import phases
from loxi.agent import metrics as am
from loxi.agent.health import READY_ENGINE, READY_KERNEL, READY_SOCKET, AgentState, HttpEndpoint, make_app
from loxi.agent.log import AgentLog
from loxi.agent.protocol import CALLER_NETNS_KEY, DEFAULT_SOCKET, ProtocolError, encode_reply, recv_request
from loxi.agent.reconcile import DEFAULT_GRACE, DEFAULT_INTERVAL, Reconciler
from loxi.agent.served import ServedNetworks
from loxi.agent.status import status_socket
from loxi.logrotate import DEFAULT_MAX_COUNT, DEFAULT_MAX_SIZE, parse_size
from loxi.plugin.cni import run

SO_PEERCRED_FORMAT = "3i"
REQUEST_TIMEOUT = 30.0  # default seconds a client may take to send its request: a stuck one frees its thread
DRAIN_TIMEOUT = 20.0  # default seconds SIGTERM waits for the requests in flight
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
COMMANDS = frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"})


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(SO_PEERCRED_FORMAT))
    return struct.unpack(SO_PEERCRED_FORMAT, creds)[1]


class Handler(socketserver.BaseRequestHandler):
    """One CNI call: enter the caller's namespace, run the engine, reply."""

    def handle(self) -> None:
        server: AgentServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        fds: list[int] = []
        server.begin()
        try:
            if _peer_uid(sock) != 0:
                server.refused(am.FALLBACK_NOT_ROOT)
                sock.sendall(encode_reply(1, b"only root may use loxi-agent", refused=True))
                return
            sock.settimeout(server.request_timeout)
            environ, stdin, fds = recv_request(sock)
            sock.settimeout(None)  # the reply waits for the engine, however long a delegated IPAM takes
            if len(fds) not in (1, 2):
                server.refused(am.FALLBACK_NO_NETNS)
                sock.sendall(encode_reply(1, b"the request carries no network namespace", refused=True))
                return
            view, refusal = _caller_view(environ, fds)
            if refusal:
                server.refused(am.FALLBACK_NETNS_VIEW)
                sock.sendall(encode_reply(1, refusal, refused=True))
                return
            stdout, stderr = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            timings = phases.record() if server.metrics is not None else {}
            _setns(fds[0])  # this thread only
            try:
                with caller_netns.installed(view):
                    rc = run(environ, io.BytesIO(stdin), stdout, stderr)
            finally:
                # Leave the caller's namespace before answering: once the runtime
                # has its reply it may delete the pod's namespace, and a thread
                # still inside would keep it (and the pod's veth) alive.
                _setns(server.own_netns)
                phases.stop()
            if stderr.getvalue():
                server.log.raw(stderr.getvalue())
            answer = stdout.getvalue()
            # Counted before the answer goes out: whoever has the answer sees the call counted.
            server.served_call(environ, stdin, rc, answer, time.perf_counter() - start, timings, fds[0])
            sock.sendall(encode_reply(rc, answer.encode()))
        except (ProtocolError, OSError, ValueError) as exc:
            server.refused(am.FALLBACK_TIMEOUT if isinstance(exc, TimeoutError) else am.FALLBACK_BROKEN, str(exc))
            server.log(f"request failed: {exc}", level="error")
        finally:
            for fd in fds:
                os.close(fd)
            server.end()


def _caller_view(environ: dict[str, str], fds: list[int]) -> tuple[caller_netns.CallerView | None, bytes]:
    """How the caller resolved CNI_NETNS (see applier.caller_netns), or why the request is refused.

    A client that does not say (an older one) is refused rather than served
    with the agent's own reading of a per-process path: it then runs the call
    in-process, where the answer is right."""
    value = environ.pop(CALLER_NETNS_KEY, None)
    path = environ.get("CNI_NETNS", "")
    pod_fd = fds[1] if len(fds) == 2 else -1
    if not path.startswith("/"):
        return None, b"" if value is None and pod_fd < 0 else b"a CNI_NETNS view for a relative CNI_NETNS"
    view = caller_netns.parse_view(path, value or "", pod_fd)
    if view is None:
        return None, b"the request does not say how the caller resolved CNI_NETNS"
    return view, b""


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    own_netns: int = -1  # the agent's own namespace, which every request thread returns to
    own_netns_id: tuple[int, int] = (0, 0)
    request_timeout: float = REQUEST_TIMEOUT
    metrics: am.AgentMetrics | None = None  # None with --no-metrics (to measure what they cost)
    state: AgentState
    served: ServedNetworks
    log: AgentLog = AgentLog()

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
            self.metrics.fallbacks.labels(reason).inc()
        if error:
            self.state.note_error(f"request failed ({reason}): {error}")

    def served_call(
        self, environ: dict[str, str], stdin: bytes, rc: int, answer: str, seconds: float, timings: dict, caller: int
    ) -> None:
        command = environ.get("CNI_COMMAND") or "none"
        command = command if command in COMMANDS else "other"
        code = "0"
        if rc != 0:
            code = _error_code(answer)
            self.state.note_error(f"{command} {environ.get('CNI_CONTAINERID', '')}: code {code}: {_error_msg(answer)}")
        with self.state.lock:
            self.state.served += 1
        if self.metrics is not None:
            self.metrics.observe_call(command, code, seconds, timings)
        if rc == 0 and command == "ADD":
            info = os.fstat(caller)
            self.served.note_add(stdin, local=(info.st_dev, info.st_ino) == self.own_netns_id)

    def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) for the requests in flight; returns how many are left."""
        deadline = time.monotonic() + timeout
        with self.state.lock:
            while self.state.in_flight and time.monotonic() < deadline:
                self.state.lock.wait(max(0.0, deadline - time.monotonic()))
            return self.state.in_flight


def _error_code(answer: str) -> str:
    import json

    try:
        code = json.loads(answer).get("code")
    except (ValueError, AttributeError):
        return "unknown"
    return str(code) if isinstance(code, int) else "unknown"


def _error_msg(answer: str) -> str:
    import json

    try:
        return str(json.loads(answer).get("msg", ""))[:500]
    except (ValueError, AttributeError):
        return answer[:500]


@dataclass(frozen=True)
class AgentOptions:
    socket: str = DEFAULT_SOCKET
    request_timeout: float = REQUEST_TIMEOUT
    metrics_address: str = ""  # "" off; HOST:PORT or a unix socket path
    metrics: bool = True
    drain_timeout: float = DRAIN_TIMEOUT
    data_dir: str = DEFAULT_DATA_DIR  # the IPAM store /readyz checks (besides those of the networks served)
    reconcile: bool = True
    reconcile_grace: float = DEFAULT_GRACE
    reconcile_interval: float = DEFAULT_INTERVAL
    log: AgentLog = field(default_factory=AgentLog)


def probe_kernel() -> dict[str, bool]:
    """Which of the kernel features a conf may need this node has (VLAN filtering, 802.1Q devices).

    Asked the only reliable way, as STATUS asks (loxi.engine.missing_kernel_features:
    a probe bridge), but in a network namespace of a thread of its own that ends
    with the thread: the node's namespace never sees the probe."""
    from types import SimpleNamespace

    from applier.execute import FEATURE_8021Q, FEATURE_VLAN_FILTERING
    from applier.netlink import IPRoute
    from applier.netns import CLONE_NEWNET, _libc
    from loxi.engine import missing_kernel_features

    found: dict[str, bool] = {}
    errors: list[str] = []

    def probe() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errors.append("unshare(CLONE_NEWNET) failed")
            return
        ipr = IPRoute()
        try:
            conf = SimpleNamespace(vlan=1, vlan_trunk=(), uplink="probe", uplink_mode="vlan")
            missing = missing_kernel_features(ipr, conf)
            found.update({FEATURE_VLAN_FILTERING: FEATURE_VLAN_FILTERING not in missing})
            found.update({FEATURE_8021Q: FEATURE_8021Q not in missing})
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            ipr.close()

    thread = threading.Thread(target=probe, name="kernel probe")
    thread.start()
    thread.join()
    if errors:
        raise OSError(errors[0])
    return found


def _hold_for_tests() -> None:
    """LOXI_AGENT_TEST_HOLD=PATH: wait while PATH exists before importing the engine (tests see /readyz false)."""
    hold = os.environ.get("LOXI_AGENT_TEST_HOLD")
    while hold and os.path.exists(hold):
        time.sleep(0.05)


def serve(path: str, request_timeout: float = REQUEST_TIMEOUT, options: AgentOptions | None = None) -> None:
    options = options or AgentOptions(socket=path, request_timeout=request_timeout)
    log = options.log
    state = AgentState()
    served = ServedNetworks(os.path.dirname(path) or ".")
    metrics = am.AgentMetrics(pools=served.pools)
    reconciler = Reconciler(
        served, options.reconcile_grace, options.reconcile_interval, options.reconcile, metrics, log
    )
    state.store_dirs = lambda: [options.data_dir, *served.store_dirs()]
    state.reconcile = reconciler.report
    # The HTTP side first: /readyz answers (false) while the engine loads.
    app = make_app(state, metrics.registry)
    endpoints = [HttpEndpoint(status_socket(path), app)]
    if options.metrics_address:
        endpoints.append(HttpEndpoint(options.metrics_address, app))
    _hold_for_tests()
    # Import the engine before the socket exists: a client that finds the socket
    # finds an agent ready to answer at full speed.
    import loxi.engine  # noqa: F401
    from applier.ipam.hostlocal import remember_lease_contents
    from applier.netlink import IPRoute  # noqa: F401  (the rare calls: a new bridge, VLANs, STATUS's probe)
    from intent.config import validate_schema

    validate_schema({"type": "loxi-cni"})
    remember_lease_contents()  # a node's 200 lease files read once, not by every ADD and DEL
    state.ready[READY_ENGINE] = True
    try:
        state.kernel_features = probe_kernel()
        state.ready[READY_KERNEL] = True
    except OSError as exc:
        state.note_error(f"kernel probe failed: {exc}")
        log(f"kernel probe failed: {exc}", level="error")

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    if os.path.exists(path):
        os.unlink(path)
    old_umask = os.umask(0o177)
    try:
        server = AgentServer(path, Handler)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.own_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    own = os.fstat(server.own_netns)
    server.own_netns_id = (own.st_dev, own.st_ino)
    server.request_timeout = options.request_timeout
    server.metrics = metrics if options.metrics else None
    server.state, server.served, server.log = state, served, log

    def on_sigterm(*_: object) -> None:
        # Not ready from this instant; new clients find no socket and run in-process;
        # the loop stops accepting, and the requests in flight finish (see below).
        state.draining = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    stop = threading.Event()
    if options.reconcile:
        threading.Thread(target=reconciler.run, args=(stop,), name="reconciler", daemon=True).start()
    state.ready[READY_SOCKET] = True
    state.serving = True
    log(f"listening on {path}")
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        left = server.drain(options.drain_timeout)
        if left:
            log(f"exiting with {left} request(s) still in flight after {options.drain_timeout:g} s", level="error")
        state.serving = False
        for endpoint in endpoints:
            endpoint.close()
        log("stopped")


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="loxi-agent",
        description="Serve loxi-cni calls from a warm process over a root-only unix socket.",
        epilog="example: loxi-agent --socket /run/loxi/agent.sock --metrics-address 127.0.0.1:9617",
    )
    parser.add_argument("--socket", default=os.environ.get("LOXI_AGENT_SOCKET") or DEFAULT_SOCKET)
    parser.add_argument(
        "--request-timeout",
        type=_seconds,
        default=REQUEST_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a client may take to send its request (default {REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--metrics-address",
        default="",
        metavar="HOST:PORT|PATH",
        help="serve /metrics, /healthz, /readyz and /status there too (default: off; always on the status socket)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="record no metrics (to measure what they cost)")
    parser.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=DRAIN_TIMEOUT,
        metavar="SECONDS",
        help=f"on SIGTERM, how long to wait for requests in flight (default {DRAIN_TIMEOUT:g})",
    )
    parser.add_argument(
        "--ipam-data-dir",
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"the IPAM store /readyz must be able to write (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--no-reconcile", action="store_true", help="never release leaked allocations")
    parser.add_argument(
        "--reconcile-grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"how long an attachment must stay leaked before it is released (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--reconcile-interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"how often the reconciler looks (default {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument("--log-file", default="", metavar="PATH", help="JSON lines there (default: text on stderr)")
    parser.add_argument(
        "--log-file-max-size",
        default=str(DEFAULT_MAX_SIZE),
        metavar="BYTES",
        help="rotate the log before it passes this size (K/M/G suffixes; 0: never; default 10M)",
    )
    parser.add_argument(
        "--log-file-max-count",
        type=int,
        default=DEFAULT_MAX_COUNT,
        metavar="N",
        help=f"old log files kept (default {DEFAULT_MAX_COUNT})",
    )
    args = parser.parse_args(argv)
    options = AgentOptions(
        socket=args.socket,
        request_timeout=args.request_timeout,
        metrics_address=args.metrics_address,
        metrics=not args.no_metrics,
        drain_timeout=args.drain_timeout,
        data_dir=args.ipam_data_dir,
        reconcile=not args.no_reconcile,
        reconcile_grace=args.reconcile_grace,
        reconcile_interval=max(args.reconcile_interval, 0.05),
        log=AgentLog(args.log_file, parse_size(args.log_file_max_size), max(args.log_file_max_count, 0)),
    )
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.socket, args.request_timeout, options)


if __name__ == "__main__":
    main()
