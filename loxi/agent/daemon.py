"""`loxi-agent`: a node daemon that keeps the engine imported and answers loxi-cni.

A cold loxi-cni pays ~0.5 s of imports (pyroute2, networkx, jsonschema) per
pod. The agent pays them once. This module starts it: the HTTP side, the engine
imported, the kernel probed, then the socket (loxi.agent.server), whose accept
loop hands each request to a fixed pool of workers (loxi.agent.pool); each
request enters the caller's network namespace (the descriptor the client sent)
and runs exactly the in-process entry point (loxi.agent.handler). On SIGTERM it
stops accepting and drains what is in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from loxi.agent import metrics as am
from loxi.agent.engine import MAX_DEFAULT_ENGINES, Engines, default_engines
from loxi.agent.handler import Handler
from loxi.agent.health import READY_ENGINE, READY_KERNEL, READY_SOCKET, AgentState, HttpEndpoint, make_app
from loxi.agent.log import AgentLog
from loxi.agent.pool import DEFAULT_WAITING, DEFAULT_WORKERS
from loxi.agent.protocol import DEFAULT_SOCKET
from loxi.agent.reconcile import DEFAULT_GRACE, DEFAULT_INTERVAL, Reconciler
from loxi.agent.served import ServedNetworks
from loxi.agent.server import REQUEST_TIMEOUT, AgentServer
from loxi.agent.status import status_socket
from loxi.logrotate import DEFAULT_MAX_COUNT, DEFAULT_MAX_SIZE, parse_size

DRAIN_TIMEOUT = 20.0  # default seconds SIGTERM waits for the requests in flight
DEFAULT_DATA_DIR = "/var/lib/cni/networks"


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
    workers: int = DEFAULT_WORKERS  # requests served at once (loxi.agent.pool says why this many)
    max_waiting: int = DEFAULT_WAITING  # requests queued for a worker; one more is refused (client runs it)
    engines: int = 0  # processes running the engine, this one included (loxi.agent.engine); 0: the default
    log: AgentLog = field(default_factory=AgentLog)


def probe_kernel() -> dict[str, bool]:
    """Which of the kernel features a conf may need this node has (VLAN filtering, 802.1Q devices).

    Asked the only reliable way, as STATUS asks (applier.features.missing_kernel_features:
    a probe bridge), but in a network namespace of a thread of its own that ends
    with the thread: the node's namespace never sees the probe."""
    from types import SimpleNamespace

    from applier.execute import FEATURE_8021Q, FEATURE_VLAN_FILTERING
    from applier.features import missing_kernel_features
    from applier.netlink import IPRoute
    from applier.netns import CLONE_NEWNET, _libc

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


def load_engine() -> None:
    """What the agent does once, so that no call pays it: the engine's imports, the schema compiled,
    the lease stores watched (a node's 200 lease files read once, then only what inotify says changed).
    bench.warm calls it too, to measure the path the agent serves."""
    import loxi.engine.commands  # noqa: F401
    from applier.ipam.watch import watch_stores
    from applier.netlink import IPRoute  # noqa: F401  (the rare calls: a new bridge, VLANs, STATUS's probe)
    from intent.config import validate_schema

    validate_schema({"type": "loxi-cni"})
    watch_stores()


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
    # Before the socket exists: a client that finds the socket finds an agent ready to answer at full speed.
    load_engine()
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
    server = AgentServer(path, Handler, bind_and_activate=False)
    server.own_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    own = os.fstat(server.own_netns)
    server.own_netns_id = (own.st_dev, own.st_ino)
    server.request_timeout = options.request_timeout
    server.metrics = metrics if options.metrics else None
    server.state, server.served, server.log = state, served, log
    server.start_workers(options.workers, options.max_waiting)

    engines = Engines(server, options, options.engines or default_engines())
    state.engines = engines.report

    def on_sigterm(*_: object) -> None:
        # Not ready from this instant; new clients find no socket and run in-process;
        # the loops stop accepting (this one and the engines'), and the requests in flight finish (see below).
        state.draining = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        engines.stop()
        threading.Thread(target=server.shutdown, daemon=True).start()

    # Before the socket exists: whoever sees the socket may stop the agent and find it removed.
    signal.signal(signal.SIGTERM, on_sigterm)
    old_umask = os.umask(0o177)
    try:
        server.server_bind()
        server.server_activate()
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.socket.setblocking(False)  # the engines accept on it too: a connection one took is not waited for
    engines.start()
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
        engines.stop()
        deadline = time.monotonic() + options.drain_timeout  # one budget for the drain and the engines' exit
        left = server.drain(options.drain_timeout)  # the engines' requests included: they keep their books here
        engines.join(max(0.0, deadline - time.monotonic()) + 1.0)
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


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
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
    parser.add_argument(
        "--workers",
        type=_count,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"requests served at once (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--max-waiting",
        type=_count,
        default=DEFAULT_WAITING,
        metavar="N",
        help=f"requests queued for a worker; more are refused (run in-process) (default {DEFAULT_WAITING})",
    )
    parser.add_argument(
        "--engines",
        type=_count,
        default=0,
        metavar="N",
        help=f"processes running the engine, this one included (default: its CPUs, at most {MAX_DEFAULT_ENGINES})",
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
        workers=args.workers,
        max_waiting=args.max_waiting,
        engines=args.engines,
        log=AgentLog(args.log_file, parse_size(args.log_file_max_size), max(args.log_file_max_count, 0)),
    )
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.socket, args.request_timeout, options)


if __name__ == "__main__":
    main()
