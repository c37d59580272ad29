"""Where a warm loxi-cni call (loxi-agent's path) spends its time.

    sudo .venv/bin/python -m bench.warm [--runs N] [--cprofile]

The engine runs in this process as loxi-agent runs it (imports paid once,
`loxi.plugin.cni.run` per call), inside a throw-away node namespace
(`loxibench-<run>-node`) with one pod namespace per round. Every ADD, CHECK and
DEL is timed whole and by phase; the phases are the engine's own functions,
wrapped for the measurement only. The netlink requests of each command are
counted (sockets opened, and requests sent through them): at applier.netlink's
RtnlSocket, and at pyroute2's IPRoute for the calls RtnlSocket leaves to it.

Then the thin client: the launcher `loxi-plan install` writes, run as a runtime
runs it, against a stub agent in this process that answers at once: the
client's own cost (interpreter start, imports, one socket round trip), beside
`python -I -S -c pass`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.profile import env
from bench.run import IP, NS_PREFIX, create_netns, delete_netns_with_prefix, remove_loxi_locks

NETWORK = "loxibench"
COMMANDS = ("ADD", "CHECK", "DEL")


class Meter:
    """Per-call totals of the wrapped phases and of the netlink traffic, timed on `clock` (wall, or --cpu)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.current: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[dict[str, float]]] = defaultdict(list)

    def timed(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = self.clock()
            try:
                return func(*args, **kwargs)
            finally:
                self.current[name] += (self.clock() - start) * 1000

        return wrapper

    def count(self, name: str) -> None:
        self.current[name] += 1

    def finish(self, command: str, wall_ms: float) -> None:
        self.current["whole call"] = wall_ms
        self.calls[command].append(dict(self.current))
        self.current = defaultdict(float)


@contextlib.contextmanager
def instrumented(meter: Meter) -> Iterator[None]:
    """Wrap the engine's phases and count netlink use; everything is put back on exit."""
    import applier.netlink.requests
    import intent.config
    import intent.result
    import loxi.engine.add
    import loxi.engine.check
    import loxi.engine.delete
    import loxi.engine.pipeline
    from applier.execute import Executor
    from applier.ipam.hostlocal import HostLocalIpam
    from applier.netlink import IPRoute
    from applier.netlink.socket import RtnlSocket

    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, new: Any) -> None:
        patches.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, new)

    for owner, attr, phase in (
        (intent.config, "load_netconf", "conf: parse + schema"),
        (loxi.engine.add, "open_ipam", "ipam: validate"),
        (loxi.engine.delete, "open_ipam", "ipam: validate"),
        (loxi.engine.check, "open_ipam", "ipam: check"),
        (HostLocalIpam, "add", "ipam: allocate"),
        (HostLocalIpam, "check", "ipam: check"),
        (HostLocalIpam, "delete", "ipam: release"),
        (loxi.engine.pipeline, "compile_desired", "compile"),
        (loxi.engine.pipeline, "compile_teardown", "compile"),
        (loxi.engine.pipeline, "observe", "observe (netlink)"),
        (loxi.engine.pipeline, "diff", "diff"),
        (loxi.engine.add, "build_result", "result: build"),
        (intent.result, "format_result", "result: format"),
        (loxi.engine.add, "pod_namespaces", "open pod netns"),
        (loxi.engine.check, "pod_namespaces", "open pod netns"),
    ):
        patch(owner, attr, meter.timed(phase, getattr(owner, attr)))
    patch(Executor, "apply", meter.timed("apply (netlink)", Executor.apply))

    real_init, real_getattr = IPRoute.__init__, IPRoute.__getattr__
    real_rtnl_init, real_request = RtnlSocket.__init__, RtnlSocket.request
    real_encode = applier.netlink.requests._encode

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        meter.count("netlink sockets opened")
        real_init(self, *args, **kwargs)

    def getattr_(self: Any, name: str) -> Any:
        found = real_getattr(self, name)
        if not callable(found):
            return found

        def request(*args: Any, **kwargs: Any) -> Any:
            meter.count("netlink requests")
            meter.count("  of which through IPRoute")
            return found(*args, **kwargs)

        return request

    def rtnl_init(self: Any, *args: Any, **kwargs: Any) -> None:
        meter.count("netlink sockets opened")
        real_rtnl_init(self, *args, **kwargs)

    def rtnl_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        meter.count("netlink requests")
        return real_request(self, *args, **kwargs)

    def encode(*args: Any, **kwargs: Any) -> Any:
        meter.count("  of which encoded afresh")  # not found among the encodings remembered
        return real_encode(*args, **kwargs)

    patch(applier.netlink.requests, "_encode", encode)
    patch(IPRoute, "__init__", init)
    patch(IPRoute, "__getattr__", getattr_)
    patch(RtnlSocket, "__init__", rtnl_init)
    patch(RtnlSocket, "request", rtnl_request)
    try:
        yield
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)


def conf(data_dir: Path, bridge: str, prev: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "loxi-cni",
        "bridge": bridge,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.204.0.0/16", "dataDir": str(data_dir)},
    }
    if prev is not None:
        doc["prevResult"] = prev
    return json.dumps(doc).encode()


def environ(command: str, cid: str, pod: str) -> dict[str, str]:
    """bench.profile's CNI variables, and CNI_ARGS as kubelet sends them."""
    return {**env(command, cid, pod), "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={cid}"}


def in_netns(name: str) -> None:
    from applier.netns import setns

    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
    finally:
        os.close(fd)


def engine_rounds(
    runs: int, prefix: str, tmp: Path, profile: bool, background: int = 0, cpu: bool = False
) -> tuple[Meter, dict[str, cProfile.Profile]]:
    from loxi.plugin.cni import run

    node, bridge = f"{prefix}node", f"lxbw{prefix[len(NS_PREFIX) : len(NS_PREFIX) + 8]}"
    pods = [f"{prefix}p{i}" for i in range(runs + 1 + background)]
    create_netns([node, *pods])
    subprocess.run([IP, "-n", node, "link", "set", "lo", "up"], check=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    meter = Meter(time.thread_time if cpu else time.perf_counter)
    profiles = {c: cProfile.Profile(*([time.thread_time] if cpu else [])) for c in COMMANDS}
    data_dir = tmp / "ipam"

    def call(command: str, i: int, stdin: bytes) -> str:
        out, err = io.StringIO(), io.StringIO()
        rc = run(environ(command, f"{prefix}{i}", pods[i]), io.BytesIO(stdin), out, err)
        if rc != 0:
            raise SystemExit(f"{command} failed: {out.getvalue()} {err.getvalue()[-2000:]}")
        return out.getvalue()

    try:
        in_netns(node)
        from loxi.agent.daemon import load_engine

        load_engine()  # what the agent does before it listens: imports, schema, the stores watched

        call("DEL", 0, conf(data_dir, bridge))  # loads the lazy imports of every command
        call("DEL", 0, conf(data_dir, bridge, json.loads(call("ADD", 0, conf(data_dir, bridge)))))
        for i in range(runs + 1, len(pods)):  # attached before, and left attached during, the measured calls
            call("ADD", i, conf(data_dir, bridge))
        with instrumented(meter):
            for i in range(1, runs + 1):
                result: dict[str, Any] = {}
                for command in COMMANDS:
                    stdin = conf(data_dir, bridge, result if command == "CHECK" else None)
                    start = meter.clock()
                    if profile:
                        profiles[command].enable()
                    out = call(command, i, stdin)
                    if profile:
                        profiles[command].disable()
                    meter.finish(command, (meter.clock() - start) * 1000)
                    if command == "ADD":
                        result = json.loads(out)
    finally:
        from applier.netns import setns

        setns(own)
        os.close(own)
        remove_loxi_locks(bridge, [f"{prefix}{i}" for i in range(len(pods))])
    return meter, profiles


class StubAgent:
    """Answers every request at once with an empty success: what is left is the client."""

    def __init__(self, path: Path) -> None:
        from loxi.agent.protocol import encode_reply, recv_request

        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.reply = encode_reply(0, b"{}\n")
        self.recv_request = recv_request
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                _, _, fds = self.recv_request(conn)
                for fd in fds:
                    os.close(fd)
                conn.sendall(self.reply)

    def close(self) -> None:
        self.server.close()


def client_rounds(runs: int, tmp: Path) -> dict[str, tuple[float, float]]:
    """{what: (median wall ms, mean CPU ms)} of the thin client and of a bare interpreter."""
    from loxi.install import LAUNCHER_MODE, render_launcher

    launcher = tmp / "bin" / "loxi-cni"
    launcher.parent.mkdir()
    launcher.write_text(render_launcher())
    launcher.chmod(LAUNCHER_MODE)
    stub = StubAgent(tmp / "stub.sock")
    env = {**environ("ADD", "client", "none"), "LOXI_AGENT_SOCKET": str(tmp / "stub.sock")}
    stdin = conf(tmp / "ipam", "none")
    cases = {
        "python -I -S -c pass": ([sys.executable, "-I", "-S", "-c", "pass"], {}),
        "loxi-cni launcher -> stub agent": ([str(launcher)], env),
    }
    figures = {}
    try:
        for name, (argv, case_env) in cases.items():
            walls, cpus = [], []
            for _ in range(runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                proc = subprocess.run(argv, input=stdin, env=case_env, capture_output=True, cwd="/")
                walls.append((time.perf_counter() - start) * 1000)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
                if proc.returncode != 0 or (argv[0] == str(launcher) and proc.stdout != b"{}\n"):
                    raise SystemExit(f"{name} failed: {proc.stdout!r} {proc.stderr[-2000:]!r}")
            figures[name] = (statistics.median(walls), statistics.mean(cpus))
    finally:
        stub.close()
    return figures


def report(meter: Meter, clients: dict[str, tuple[float, float]], runs: int, background: int, out: Any) -> None:
    print(
        f"loxi-cni warm path (as in loxi-agent), {runs} calls per command, {background} other pods attached,"
        f" load {os.getloadavg()[0]:.2f}",
        file=out,
    )
    phases = sorted({phase for calls in meter.calls.values() for call in calls for phase in call})
    counter_order = (
        "netlink requests",
        "  of which encoded afresh",
        "  of which through IPRoute",
        "netlink sockets opened",
    )
    counters = [p for p in counter_order if p in phases]
    timed_phases = ["whole call"] + [p for p in phases if p not in counters and p != "whole call"]
    header = "median CPU ms per call" if meter.clock is time.thread_time else "median ms per call"
    print(f"\n  {header:28}" + "".join(f"{c:>10}" for c in COMMANDS), file=out)
    for phase in timed_phases + counters:
        cells = []
        for command in COMMANDS:
            values = [call.get(phase, 0.0) for call in meter.calls[command]]
            cells.append(f"{statistics.median(values):10.1f}" if values else f"{'-':>10}")
        print(f"  {phase:28}" + "".join(cells), file=out)
    print("  (the rest of a call: CNI_ARGS and env checks, locks, logging, graph order)", file=out)
    print("\n  thin client, wall median / CPU mean (ms):", file=out)
    for name, (wall, cpu) in clients.items():
        print(f"    {name:34} {wall:7.1f} / {cpu:5.1f}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--background-pods", type=int, default=0, help="pods attached first and left attached")
    parser.add_argument("--cprofile", action="store_true", help="also print the top functions of each command")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--cpu", action="store_true", help="time the calls and phases on this thread's CPU clock, not the wall's"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    prefix = f"{NS_PREFIX}{uuid.uuid4().hex[:10]}-"
    tmp = Path(tempfile.mkdtemp(prefix="loxibench-"))
    try:
        background = max(0, args.background_pods)
        meter, profiles = engine_rounds(args.runs, prefix, tmp, args.cprofile, background, args.cpu)
        clients = client_rounds(args.runs, tmp)
    finally:
        delete_netns_with_prefix(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
    report(meter, clients, args.runs, max(0, args.background_pods), sys.stdout)
    if args.cprofile:
        for command in COMMANDS:
            print(f"\n  cProfile of {args.runs} {command} calls, by own time:")
            pstats.Stats(profiles[command], stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
