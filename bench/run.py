"""Time loxi-cni and the reference `bridge` plugin side by side, call by call.

    .venv/bin/python -m bench.run [--rounds N] [--background-pods N] [--quick]
                                  [--plugin PATH] [--no-reference] [--agent-engines N] [--json FILE]

Each plugin gets its own throw-away node namespace (`loxibench-<run>-<plugin>-node`),
its own IPAM store in a temporary directory and a pool of pod namespaces. Every
call is executed as a runtime executes it: `nsenter --net=<node> -- <plugin>`
with only the CNI variables in the environment and the conf on stdin. The
harness measures the whole process (wall time from spawn to reap, the
child's peak RSS, and the CPU time of the call's processes from `wait4` plus
that of loxi-agent while it served the call, its engine processes summed in),
checks the outcome of the call in the kernel and the store, and alternates the
two plugins call by call (the first of the pair alternating too) so that machine
drift hits both alike.

Everything the run makes is removed in a finally: namespaces (also on Ctrl-C
or SIGTERM), the temporary directory, and the attachment lock files loxi-cni
leaves in /run/loxi/locks for the containers this run invented.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
TIME = "/usr/bin/time"
IP = shutil.which("ip") or "/usr/sbin/ip"
REFERENCE_DIR = Path("/usr/lib/cni")
NS_PREFIX = "loxibench-"
NETWORK = "loxibench"
IFNAME = "eth0"
LOXI_LOCK_DIR = Path("/run/loxi/locks")
LOXI = "loxi-cni"
AGENT = "loxi-cni+agent"
SHIM = "shim+agent"  # the static shim (shim/) as loxi-cni, to the same loxi-agent
REF = "bridge"


class BenchError(RuntimeError):
    """A call failed or left the wrong state behind: the figures would be meaningless."""


# ---------------------------------------------------------------- processes


@dataclass
class Call:
    plugin: str
    command: str
    container_id: str
    wall_s: float
    maxrss_kb: int
    cpu_s: float  # user + system of the call's processes: time, nsenter, the plugin and its children (wait4)
    rc: int
    stdout: bytes
    stderr: bytes
    agent_cpu_s: float = 0.0  # loxi-agent's CPU time while it served this call (sequential calls only)

    def describe(self) -> str:
        return (
            f"{self.plugin} {self.command} {self.container_id}: rc={self.rc}\n"
            f"stdout: {self.stdout.decode(errors='replace')[-2000:]}\n"
            f"stderr: {self.stderr.decode(errors='replace')[-2000:]}"
        )


@dataclass
class Running:
    pid: int
    t0: float
    fds: tuple[int, int, int]
    rss_file: Path | None
    plugin: str
    command: str
    container_id: str


LIVE_PIDS: set[int] = set()
RSS_DIR: list[Path] = []  # where /usr/bin/time writes each call's peak RSS (set by the run)
CALL_SEQ = iter(range(1 << 62))


def process_cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU time, as clock_getcpuclockid(3) makes it.

    It is the scheduler's nanosecond count for all the process's threads, those
    that have ended included: loxi-agent serves each request on its own thread,
    and /proc/PID/stat would give only 10 ms ticks.
    """
    return ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def process_cpu_s(clock: int | None) -> float:
    return time.clock_gettime(clock) if clock is not None else 0.0


ENGINE_MODULE = "loxi.agent.engine"  # what an engine process runs: `<python> -m loxi.agent.engine ...`
CHILDREN_TTL_S = 0.5  # how old the list of engine processes may be before a reading looks again


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the field after the command's name (state, ppid, ...), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data.rpartition(b")")[2].decode().split()


def children_of(pid: int) -> dict[int, tuple[int, int, int]]:
    """{child pid: (its start time, utime, stime)} of every process whose parent is `pid`.

    From /proc/*/stat (ppid, starttime, and the clock ticks since they are at hand):
    /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN, which many kernels
    (this bench machine's too) lack. The start time tells a child from a later
    process that got its pid.
    """
    found: dict[int, tuple[int, int, int]] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(int(entry.name))
            if fields is not None and len(fields) > 19 and fields[1] == str(pid):
                found[int(entry.name)] = (int(fields[19]), int(fields[11]), int(fields[12]))
    return found


def _runs_engine(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read()
    except OSError:
        return False
    return ENGINE_MODULE.encode() in argv  # also `-c "from loxi.agent.engine import ..."`


@dataclass
class _Engine:
    start: int  # its start time (/proc/PID/stat), which a later process with the same pid would not have
    clock: int
    cpu_s: float = 0.0  # the last value read of its CPU clock
    ticks: tuple[int, int] = (0, 0)  # the last utime, stime read (clock ticks)


class AgentCpu:
    """loxi-agent's CPU time: its own process's clock plus that of each of its engine processes.

    loxi-agent's main process starts engine processes (`python -m loxi.agent.engine`,
    its direct children) that accept on the same socket; a call is served by whichever
    accepts it, so the agent's CPU is the sum over all of them. The children are found
    in /proc (`children_of`), and only those running loxi.agent.engine count (a process
    the agent runs for a call, such as a delegated IPAM plugin, never counted). The list
    is cached: a reading looks again only when it is older than CHILDREN_TTL_S or when
    asked (`refresh`), since readings come around every call and a scan is ~2 ms. An
    engine that appears later (started late, or respawned) counts from when it is found,
    with all its CPU since it started; one that has exited keeps the last value read
    while it lived (what it spent after that is not seen: its clock is gone, and a
    parent's clock never includes its children's).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.main_clock = process_cpu_clock(pid)
        self.main_s = 0.0
        self.main_ticks = (0, 0)
        self.live: dict[int, _Engine] = {}
        self.exited_s = 0.0  # what the engines that have exited were last read at
        self.exited_ticks = (0, 0)
        self.looked = -math.inf  # when the children were last listed (perf_counter)

    def _exited(self, pid: int) -> None:
        engine = self.live.pop(pid)
        self.exited_s += engine.cpu_s
        self.exited_ticks = (self.exited_ticks[0] + engine.ticks[0], self.exited_ticks[1] + engine.ticks[1])

    def refresh(self) -> None:
        """List the agent's engine processes again: new ones get a clock, gone ones keep their last value."""
        children = children_of(self.pid)
        for pid in [pid for pid, engine in self.live.items() if children.get(pid, (None,))[0] != engine.start]:
            self._exited(pid)
        for pid, (start, utime, stime) in children.items():
            if pid not in self.live and _runs_engine(pid):
                self.live[pid] = _Engine(start, process_cpu_clock(pid))
            if pid in self.live:
                self.live[pid].ticks = (utime, stime)
        self.looked = time.perf_counter()

    def engines(self, refresh: bool = True) -> int:
        """How many engine processes the agent has now."""
        if refresh:
            self.refresh()
        return len(self.live)

    def cpu_s(self, refresh: bool = False) -> float:
        """The agent's CPU seconds so far, every engine included (refresh: list the engines again first)."""
        if refresh or time.perf_counter() - self.looked > CHILDREN_TTL_S:
            self.refresh()
        with contextlib.suppress(OSError):  # the agent has exited: its last value
            self.main_s = time.clock_gettime(self.main_clock)
        for pid, engine in list(self.live.items()):
            try:
                now = time.clock_gettime(engine.clock)
            except OSError:  # it has exited (and been reaped): what was read while it lived
                self._exited(pid)
                continue
            if now < engine.cpu_s:  # a newer process with its pid: not this engine
                self._exited(pid)
            else:
                engine.cpu_s = now
        return self.main_s + self.exited_s + sum(e.cpu_s for e in self.live.values())

    def user_sys_s(self) -> tuple[float, float]:
        """utime and stime from /proc/PID/stat, summed as cpu_s sums (clock ticks, every thread)."""
        fields = _stat_fields(self.pid)
        if fields is not None:
            self.main_ticks = (int(fields[11]), int(fields[12]))
        user, system = self.main_ticks[0] + self.exited_ticks[0], self.main_ticks[1] + self.exited_ticks[1]
        for pid, engine in self.live.items():
            fields = _stat_fields(pid)
            if fields is not None and int(fields[19]) == engine.start:
                engine.ticks = (int(fields[11]), int(fields[12]))
            user, system = user + engine.ticks[0], system + engine.ticks[1]
        tick = os.sysconf("SC_CLK_TCK")
        return user / tick, system / tick


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name)  # close-on-exec; dup2 onto 0/1/2 clears it for the child
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def spawn(argv: Sequence[str], env: dict[str, str], stdin: bytes, plugin: str, command: str, cid: str) -> Running:
    """Start argv under /usr/bin/time.

    The child's peak RSS comes from /usr/bin/time (%M, its own wait4), not from
    this process's wait4: a child forked or vforked by this Python process
    starts with this process's pages, and ru_maxrss would report the harness's
    ~20 MB for any plugin smaller than that.
    """
    fds = (_memfd("stdin", stdin), _memfd("stdout"), _memfd("stderr"))
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
    rss_file = RSS_DIR[0] / f"rss-{next(CALL_SEQ)}" if RSS_DIR else None
    if rss_file is not None:
        argv = [TIME, "-f", "%M", "-o", str(rss_file), *argv]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions)
    LIVE_PIDS.add(pid)
    return Running(pid, t0, fds, rss_file, plugin, command, cid)


def finish(run: Running, status: int, rusage: Any, t1: float) -> Call:
    LIVE_PIDS.discard(run.pid)
    os.close(run.fds[0])
    # wait4's times, not /usr/bin/time's: it prints them in whole hundredths, truncated, which
    # reads a 14 ms process as 10 ms and a 9 ms one as 0.
    maxrss, cpu = rusage.ru_maxrss, rusage.ru_utime + rusage.ru_stime
    if run.rss_file is not None:
        last = (run.rss_file.read_text().strip().splitlines() or [""])[-1].split()
        run.rss_file.unlink()
        with contextlib.suppress(ValueError):
            maxrss = int(last[0])
    return Call(
        run.plugin,
        run.command,
        run.container_id,
        t1 - run.t0,
        maxrss,
        cpu,
        os.waitstatus_to_exitcode(status),
        _read_all(run.fds[1]),
        _read_all(run.fds[2]),
    )


def wait_one(run: Running) -> Call:
    _, status, rusage = os.wait4(run.pid, 0)
    return finish(run, status, rusage, time.perf_counter())


def wait_any(running: dict[int, Running]) -> Call:
    while True:
        pid, status, rusage = os.wait4(-1, 0)
        t1 = time.perf_counter()
        if pid in running:
            return finish(running.pop(pid), status, rusage, t1)
        LIVE_PIDS.discard(pid)  # not one of this batch (cannot happen: the harness is single-threaded)


def sh(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: rc={proc.returncode}: {proc.stderr.strip()}")
    return proc


def ip_json(netns: str, *args: str) -> Any:
    out = sh(IP, "-j", "-n", netns, *args).stdout
    return json.loads(out) if out.strip() else []


# ---------------------------------------------------------------- namespaces


def list_netns() -> list[str]:
    out = sh(IP, "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ip_batch(lines: list[str]) -> None:
    if lines:
        sh(IP, "-force", "-batch", "-", stdin="\n".join(lines) + "\n", check=False)


def create_netns(names: list[str]) -> None:
    ip_batch([f"netns add {n}" for n in names])
    missing = set(names) - set(list_netns())
    if missing:
        raise BenchError(f"could not create namespaces: {sorted(missing)[:3]}")


def delete_netns_with_prefix(prefix: str) -> None:
    ip_batch([f"netns delete {n}" for n in list_netns() if n.startswith(prefix)])


def netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


# ---------------------------------------------------------------- plugins


@dataclass
class Plugin:
    key: str  # LOXI or REF
    path: Path
    conf_type: str
    node: str
    data_dir: Path
    bridge: str
    subnet: str
    scratch: list[str] = field(default_factory=list)  # pod namespaces reused: each is left empty by a DEL
    background: list[str] = field(default_factory=list)
    calls: dict[str, list[Call]] = field(default_factory=dict)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    first_add: Call | None = None
    seq: int = 0
    results: dict[str, dict] = field(default_factory=dict)  # container id -> ADD result
    extra_env: dict[str, str] = field(default_factory=dict)  # LOXI_AGENT_SOCKET: '' in-process, or the agent's
    agent_cpu: AgentCpu | None = None  # loxi-agent's CPU clocks (its engines'), for the calls it serves
    twin: Plugin | None = None  # the same plugin on a node with no other pod: the 200/0 ratio's 0, interleaved

    def agent_cpu_s(self, refresh: bool = False) -> float:
        return self.agent_cpu.cpu_s(refresh) if self.agent_cpu is not None else 0.0

    def run_one(self, command: str, cid: str = "", pod: str = "", prev: dict | None = None) -> Call:
        """One call, with the agent's CPU time while it ran."""
        before = self.agent_cpu_s()
        call = wait_one(self.start(command, cid, pod, prev))
        call.agent_cpu_s = self.agent_cpu_s() - before
        return call

    def conf(self, prev_result: dict | None = None) -> bytes:
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": self.conf_type,
            "bridge": self.bridge,
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": self.subnet, "dataDir": str(self.data_dir)},
        }
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return json.dumps(conf).encode()

    def new_container(self) -> str:
        self.seq += 1
        return hashlib.sha256(f"{self.node}/{self.seq}".encode()).hexdigest()

    def start(self, command: str, cid: str = "", pod: str = "", prev: dict | None = None) -> Running:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns_path(pod) if pod else "",
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": str(REFERENCE_DIR),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{self.seq}" if cid else "",
        }
        env = {k: v for k, v in env.items() if v}
        env.update(self.extra_env)
        argv = [NSENTER, f"--net={netns_path(self.node)}", "--", str(self.path)]
        return spawn(argv, env, self.conf(prev), self.key, command, cid)

    def record(self, label: str, call: Call) -> None:
        self.calls.setdefault(label, []).append(call)

    # -- correctness checks, outside the timed window

    def check_version(self, call: Call) -> None:
        if call.rc != 0 or "1.0.0" not in json.loads(call.stdout).get("supportedVersions", []):
            raise BenchError(call.describe())

    def check_add(self, call: Call, pod: str) -> dict:
        if call.rc != 0:
            raise BenchError(call.describe())
        result = json.loads(call.stdout)
        address = result["ips"][0]["address"]
        info = ip_json(pod, "addr", "show", "dev", IFNAME)
        have = {f"{a['local']}/{a['prefixlen']}" for a in info[0]["addr_info"]} if info else set()
        if address not in have:
            raise BenchError(f"{call.describe()}\npod {pod} lacks {address}: has {sorted(have)}")
        self.results[call.container_id] = result
        return result

    def check_check(self, call: Call) -> None:
        if call.rc != 0:
            raise BenchError(call.describe())

    def host_veth(self, result: dict) -> str:
        return next(i["name"] for i in result["interfaces"] if not i.get("sandbox") and i["name"] != self.bridge)

    def check_del(self, call: Call, pod: str, node_links: set[str] | None = None) -> None:
        if call.rc != 0:
            raise BenchError(call.describe())
        result = self.results.pop(call.container_id)
        veth = self.host_veth(result)
        if node_links is None:
            node_links = {link["ifname"] for link in ip_json(self.node, "link", "show")}
        if veth in node_links:
            raise BenchError(f"{call.describe()}\nhost veth {veth} still in {self.node}")
        if any(link["ifname"] == IFNAME for link in ip_json(pod, "link", "show")):
            raise BenchError(f"{call.describe()}\n{IFNAME} still in pod {pod}")
        ip = result["ips"][0]["address"].split("/")[0]
        if (self.data_dir / NETWORK / ip).exists():
            raise BenchError(f"{call.describe()}\nallocation file {ip} still in the store")

    # -- single calls

    def version(self) -> None:
        call = self.run_one("VERSION")
        self.check_version(call)
        self.record("VERSION", call)

    def add(self, label: str, pod: str) -> str:
        cid = self.new_container()
        call = self.run_one("ADD", cid, pod)
        self.check_add(call, pod)
        self.record(f"ADD{label}", call)
        return cid

    def check(self, label: str, cid: str, pod: str) -> None:
        call = self.run_one("CHECK", cid, pod, prev=self.results[cid])
        self.check_check(call)
        self.record(f"CHECK{label}", call)

    def delete(self, label: str, cid: str, pod: str) -> None:
        call = self.run_one("DEL", cid, pod)
        self.check_del(call, pod)
        self.record(f"DEL{label}", call)

    # -- many at a time

    def many(self, command: str, jobs: list[tuple[str, str]], width: int) -> tuple[float, list[Call], float]:
        """Run `command` for every (container id, pod) with `width` in flight.

        Returns the total seconds, the calls, and the agent's CPU seconds over them all.
        """
        pending = list(jobs)
        running: dict[int, Running] = {}
        calls: list[Call] = []
        agent_before = self.agent_cpu_s(refresh=True)
        t0 = time.perf_counter()
        while pending or running:
            while pending and len(running) < width:
                cid, pod = pending.pop(0)
                run = self.start(command, cid, pod)
                running[run.pid] = run
            calls.append(wait_any(running))
        total = time.perf_counter() - t0
        return total, calls, self.agent_cpu_s(refresh=True) - agent_before

    def burst(self, size: int, width: int) -> None:
        pods = self.scratch[:size]
        jobs = [(self.new_container(), pod) for pod in pods]
        pod_of = dict(jobs)
        add_s, adds, add_agent_cpu = self.many("ADD", jobs, width)
        for call in adds:
            self.check_add(call, pod_of[call.container_id])
        del_s, dels, del_agent_cpu = self.many("DEL", jobs, width)
        node_links = {link["ifname"] for link in ip_json(self.node, "link", "show")}
        for call in dels:
            self.check_del(call, pod_of[call.container_id], node_links)
        self.bursts.append(
            {
                "size": size,
                "width": width,
                "add_total_s": add_s,
                "add_pods_per_s": size / add_s,
                "del_total_s": del_s,
                "del_pods_per_s": size / del_s,
                "add_call_median_ms": 1000 * statistics.median(c.wall_s for c in adds),
                "add_call_maxrss_kb": max(c.maxrss_kb for c in adds),
                # CPU per pod: the calls' processes and the agent's share, all of it
                "add_cpu_per_pod_ms": 1000 * (sum(c.cpu_s for c in adds) + add_agent_cpu) / size,
                "del_cpu_per_pod_ms": 1000 * (sum(c.cpu_s for c in dels) + del_agent_cpu) / size,
                "add_agent_cpu_per_pod_ms": 1000 * add_agent_cpu / size,
            }
        )

    def attach_background(self, width: int, via: Plugin) -> float:
        """Attach the background pods with `via` (this plugin, or the fast reference one on this node's bridge)."""
        jobs = [(self.new_container(), pod) for pod in self.background]
        pod_of = dict(jobs)
        total, adds, _ = via.many("ADD", jobs, width)
        for call in adds:
            self.check_add(call, pod_of[call.container_id])
        return total

    def attacher(self) -> Plugin:
        """The reference plugin acting on this plugin's node, bridge and store (a compatible host-local store)."""
        return Plugin(REF, REFERENCE_DIR / "bridge", "bridge", self.node, self.data_dir, self.bridge, self.subnet)


# ---------------------------------------------------------------- statistics and report


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def add_check_pairs(adds: list[Call], checks: list[Call]) -> list[tuple[float, float]]:
    """(wall ms, CPU ms) of each pod's ADD plus its own CHECK: CRI-O runs CHECK right after every
    ADD, so on a CRI-O node a pod's network costs the pair, not the ADD alone."""
    by_container = {call.container_id: call for call in adds}
    return [
        (
            1000 * (by_container[c.container_id].wall_s + c.wall_s),
            1000 * sum(x.cpu_s + x.agent_cpu_s for x in (by_container[c.container_id], c)),
        )
        for c in checks
        if c.container_id in by_container
    ]


def summarize(calls: list[Call]) -> dict[str, Any]:
    walls = [1000 * c.wall_s for c in calls]
    rss = [c.maxrss_kb / 1024 for c in calls]
    return {
        "n": len(calls),
        "median_ms": statistics.median(walls),
        "p95_ms": p95(walls),
        "max_ms": max(walls),
        "min_ms": min(walls),
        "peak_rss_median_mb": statistics.median(rss),
        "cpu_mean_ms": 1000 * statistics.fmean(c.cpu_s + c.agent_cpu_s for c in calls),
        "agent_cpu_mean_ms": 1000 * statistics.fmean(c.agent_cpu_s for c in calls),
        "peak_rss_max_mb": max(rss),
    }


COMMANDS = ("VERSION", "ADD", "CHECK", "DEL")


def figures(plugins: list[Plugin], background: int) -> list[dict[str, Any]]:
    """Every reported figure, per plugin, with the ratio loxi-cni / reference."""
    per: dict[str, dict[str, float | None]] = {p.key: {} for p in plugins}
    order: list[tuple[str, str]] = []  # (figure name, unit)

    def put(plugin: str, name: str, unit: str, value: float | None) -> None:
        if (name, unit) not in order:
            order.append((name, unit))
        per[plugin][name] = value

    for p in plugins:
        stats = {label: summarize(calls) for label, calls in p.calls.items()}
        for cmd in COMMANDS:
            s = stats.get(cmd)
            if not s:
                continue
            put(p.key, f"{cmd} median", "ms", s["median_ms"])
            put(p.key, f"{cmd} p95", "ms", s["p95_ms"])
            put(p.key, f"{cmd} max", "ms", s["max_ms"])
            put(p.key, f"{cmd} CPU, processes + agent (mean)", "ms", s["cpu_mean_ms"])
            agent_cpu = s["agent_cpu_mean_ms"] if p.agent_cpu is not None else None
            put(p.key, f"{cmd} CPU, of which loxi-agent (mean)", "ms", agent_cpu)
            put(p.key, f"{cmd} peak RSS (median)", "MB", s["peak_rss_median_mb"])
        pairs = add_check_pairs(p.calls.get("ADD", []), p.calls.get("CHECK", []))
        if pairs:
            put(p.key, "ADD+CHECK pair median (CRI-O)", "ms", statistics.median(wall for wall, _ in pairs))
            put(p.key, "ADD+CHECK pair CPU, processes + agent (mean)", "ms", statistics.fmean(c for _, c in pairs))
        if p.first_add:
            put(p.key, "first ADD (creates the bridge)", "ms", 1000 * p.first_add.wall_s)
        if "ADD" in stats:
            put(p.key, "ADD median, 0 pods attached", "ms", stats["ADD"]["median_ms"])
        for cmd in ("ADD", "CHECK", "DEL"):
            s = stats.get(f"{cmd}@bg")
            if s:
                put(p.key, f"{cmd} median, {background} pods attached", "ms", s["median_ms"])
        if "ADD@bg0" in stats:
            put(p.key, "ADD median, 0 pods attached, beside those", "ms", stats["ADD@bg0"]["median_ms"])
        empty = stats.get("ADD@bg0") or stats.get("ADD")  # the interleaved calls on the empty node, if made
        if empty and "ADD@bg" in stats:
            put(p.key, f"ADD median {background} pods / 0 pods", "x", stats["ADD@bg"]["median_ms"] / empty["median_ms"])
        for b in p.bursts[:1]:
            tag = f"burst {b['size']} ADDs {b['width']} at a time"
            put(p.key, f"{tag}: total", "s", b["add_total_s"])
            put(p.key, f"{tag}: pods/s", "pods/s", b["add_pods_per_s"])
            put(p.key, f"{tag}: per-call median", "ms", b["add_call_median_ms"])
            put(p.key, f"{tag}: CPU per pod, processes + agent", "ms", b["add_cpu_per_pod_ms"])
            agent_cpu = b["add_agent_cpu_per_pod_ms"] if p.agent_cpu is not None else None
            put(p.key, f"{tag}: CPU per pod, of which loxi-agent", "ms", agent_cpu)
            put(p.key, f"burst {b['size']} DELs {b['width']} at a time: total", "s", b["del_total_s"])
            put(p.key, f"burst {b['size']} DELs {b['width']} at a time: pods/s", "pods/s", b["del_pods_per_s"])
            put(
                p.key,
                f"burst {b['size']} DELs {b['width']} at a time: CPU per pod, processes + agent",
                "ms",
                b["del_cpu_per_pod_ms"],
            )
    rows = []
    for name, unit in order:
        row: dict[str, Any] = {"figure": name, "unit": unit}
        for p in plugins:
            row[p.key] = per[p.key].get(name)
        loxi, agent, shim, ref = row.get(LOXI), row.get(AGENT), row.get(SHIM), row.get(REF)
        row["ratio"] = loxi / ref if loxi is not None and ref else None
        row["ratio_agent"] = agent / ref if agent is not None and ref else None
        row["ratio_shim"] = shim / ref if shim is not None and ref else None
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], keys: list[str], header: str) -> str:
    def fmt(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        if unit == "ms":
            return f"{v:.1f}"
        if unit in ("s", "x", "MB"):
            return f"{v:.2f}"
        return f"{v:.1f}"

    width = max(len(f"{r['figure']} ({r['unit']})") for r in rows) + 2
    names = {LOXI: LOXI, AGENT: AGENT, SHIM: SHIM, REF: "bridge (ref)"}
    lines = [header, ""]
    head = f"{'figure':<{width}}" + "".join(f"{names[k]:>16}" for k in keys)
    if REF in keys:
        head += f"{'loxi/ref':>11}"
        if AGENT in keys:
            head += f"{'agent/ref':>11}"
        if SHIM in keys:
            head += f"{'shim/ref':>11}"
    lines += [head, "-" * len(head)]
    for r in rows:
        line = f"{r['figure'] + ' (' + r['unit'] + ')':<{width}}" + "".join(f"{fmt(r[k], r['unit']):>16}" for k in keys)
        if REF in keys:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            line += f"{ratio:>11}"
            if AGENT in keys:
                ratio = "-" if r.get("ratio_agent") is None else f"{r['ratio_agent']:.2f}x"
                line += f"{ratio:>11}"
            if SHIM in keys:
                ratio = "-" if r.get("ratio_shim") is None else f"{r['ratio_shim']:.2f}x"
                line += f"{ratio:>11}"
        lines.append(line)
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


# ---------------------------------------------------------------- the run


@dataclass
class Settings:
    rounds: int
    background: int
    burst: int
    width: int
    plugin: Path | None  # None: the launcher `loxi-plan install` writes, in the run's temporary directory
    reference: bool
    background_by: str
    agent: bool = True
    agent_engines: int | None = None  # loxi-agent --engines N (None: the agent's default)
    shim: Path | None = None  # the built shim for the shim+agent column (None: no such column)


def alternate(plugins: list[Plugin], i: int) -> list[Plugin]:
    return plugins if i % 2 == 0 else plugins[::-1]


def remove_loxi_locks(bridge: str, container_ids: Iterator[str] | Sequence[str]) -> None:
    """Remove the lock files loxi-cni made for these invented containers and this bridge (and nothing else)."""
    names = [f"bridge-{bridge}.lock"]
    for cid in container_ids:
        digest = hashlib.sha256(f"{NETWORK}\0{cid}\0{IFNAME}".encode()).hexdigest()[:32]
        names.append(f"attach-{digest}.lock")
    for name in names:
        with contextlib.suppress(OSError):
            (LOXI_LOCK_DIR / name).unlink()


def cleanup_locks(plugins: list[Plugin]) -> None:
    for p in [*plugins, *(p.twin for p in plugins if p.twin is not None)]:
        if p.key == LOXI:
            remove_loxi_locks(
                p.bridge, [hashlib.sha256(f"{p.node}/{seq}".encode()).hexdigest() for seq in range(1, p.seq + 1)]
            )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


@contextlib.contextmanager
def workspace(run_id: str) -> Iterator[Path]:
    """A temporary directory and this run's namespaces, all removed at the end, whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="loxibench-"))
    RSS_DIR[:] = [tmp] if os.access(TIME, os.X_OK) else []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield tmp
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for pid in list(LIVE_PIDS):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.waitpid(pid, 0)
                LIVE_PIDS.discard(pid)
            delete_netns_with_prefix(f"{NS_PREFIX}{run_id}-")
            shutil.rmtree(tmp, ignore_errors=True)
            RSS_DIR.clear()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_agent(tmp: Path, engines: int | None = None) -> tuple[subprocess.Popen, Path]:
    """A loxi-agent for the `loxi-cni+agent` column, on a private socket (`--engines` if given)."""
    sock = tmp / "agent" / "agent.sock"
    binary = Path(sys.prefix) / "bin" / "loxi-agent"
    argv = [str(binary), "--socket", str(sock), *(["--engines", str(engines)] if engines is not None else [])]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    atexit.register(proc.kill)  # also when the run fails half-way
    for _ in range(400):
        if sock.exists():
            return proc, sock
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise BenchError("loxi-agent did not start")


ENGINES_TIMEOUT_S = 20.0  # how long the agent's engine processes may take to appear
ENGINES_STEADY_S = 1.5  # without --agent-engines: the engines are all up once their number stays this long
SETTLED_CPU_S = 0.01  # ... and they have finished starting once the agent spends less than this
SETTLED_OVER_S = 0.5  # over this long


def wait_for_engines(proc: subprocess.Popen, cpu: AgentCpu, expected: int | None) -> int:
    """Wait until the agent's engine processes are all up and done starting; return how many
    processes serve (the main one and its engines).

    The engines start after the socket appears (and may take a second or more to import the
    engine on a loaded machine): a call measured before would find fewer of them, and its
    agent CPU would include their start. With `expected` (--agent-engines), until there are
    expected - 1 engine processes; without, until their number has not changed for
    ENGINES_STEADY_S. Then until the agent is idle (under SETTLED_CPU_S over SETTLED_OVER_S).
    """
    deadline = time.monotonic() + ENGINES_TIMEOUT_S
    count, since = cpu.engines(), time.monotonic()
    while True:
        if proc.poll() is not None:
            raise BenchError(f"loxi-agent exited with {proc.returncode} while its engines started")
        now = time.monotonic()
        if expected is not None and count >= expected - 1:
            break
        if expected is None and now - since >= ENGINES_STEADY_S:
            break
        if now > deadline:
            if expected is not None:
                raise BenchError(
                    f"loxi-agent has {count} engine processes ({ENGINE_MODULE}) after {ENGINES_TIMEOUT_S:g} s,"
                    f" not the {expected - 1} that --engines {expected} means"
                )
            break
        time.sleep(0.1)
        if (now_count := cpu.engines()) != count:
            count, since = now_count, time.monotonic()
    last = cpu.cpu_s(refresh=True)
    while time.monotonic() < deadline:
        time.sleep(SETTLED_OVER_S)
        now_s = cpu.cpu_s(refresh=True)
        if now_s - last < SETTLED_CPU_S:
            break
        last = now_s
    return cpu.engines() + 1


def build_shim(run_id: str) -> Path | None:
    """shim/ built now (static, as scripts/setup builds it), or None without a C compiler."""
    source = Path(__file__).resolve().parent.parent / "shim" / "build.sh"
    if not source.exists() or shutil.which(os.environ.get("CC", "cc")) is None:
        log("no shim/ or no C compiler: the shim+agent column is left out")
        return None
    out = Path(tempfile.gettempdir()) / f"loxibench-shim-{run_id}"
    atexit.register(lambda: out.unlink(missing_ok=True))
    subprocess.run(
        ["sh", str(source), str(out)], check=True, capture_output=True, env={**os.environ, "PYTHON": sys.executable}
    )
    return out


def run(settings: Settings, run_id: str) -> dict[str, Any]:
    started = time.time()
    load_before = os.getloadavg()
    with workspace(run_id) as tmp:
        plugins: list[Plugin] = []
        if settings.plugin is None:  # what a runtime executes: the installed launcher
            from loxi.install import LAUNCHER_MODE, render_launcher

            launcher = tmp / "bin" / "loxi-cni"
            launcher.parent.mkdir()
            launcher.write_text(render_launcher())
            launcher.chmod(LAUNCHER_MODE)
            settings = replace(settings, plugin=launcher)
        specs = [(LOXI, settings.plugin, "loxi-cni", "l", 201)]
        if settings.agent:
            specs.append((AGENT, settings.plugin, "loxi-cni", "a", 203))
        if settings.agent and settings.shim is not None:  # as `loxi-plan install` places it
            from loxi.install import INPROCESS_NAME, LAUNCHER_MODE, render_launcher

            shim_bin = tmp / "shim-bin"
            shim_bin.mkdir()
            shutil.copy2(settings.shim, shim_bin / "loxi-cni")
            (shim_bin / INPROCESS_NAME).write_text(render_launcher(inprocess=True))
            (shim_bin / INPROCESS_NAME).chmod(LAUNCHER_MODE)
            specs.append((SHIM, shim_bin / "loxi-cni", "loxi-cni", "s", 204))
        if settings.reference:
            specs.append((REF, REFERENCE_DIR / "bridge", "bridge", "r", 202))
        scratch_size = max(settings.burst, 1)
        agent = start_agent(tmp, settings.agent_engines) if settings.agent else None
        agent_cpu = AgentCpu(agent[0].pid) if agent is not None else None
        engines = wait_for_engines(agent[0], agent_cpu, settings.agent_engines) if agent and agent_cpu else None
        if engines is not None:
            log(f"loxi-agent: {engines} engine process(es) serving")
        for key, path, conf_type, tag, octet in specs:
            prefix = f"{NS_PREFIX}{run_id}-{tag}"
            p = Plugin(
                key=key,
                path=path,
                conf_type=conf_type,
                node=f"{prefix}-node",
                data_dir=tmp / f"ipam-{tag}",
                bridge=f"lxb{tag}{run_id[:8]}",
                subnet=f"10.{octet}.0.0/16",
                scratch=[f"{prefix}-s{i}" for i in range(scratch_size)],
                background=[f"{prefix}-b{i}" for i in range(settings.background)],
            )
            if key == LOXI:
                p.extra_env["LOXI_AGENT_SOCKET"] = ""  # in-process, even if a node agent runs here
            elif key in (AGENT, SHIM) and agent is not None:
                p.extra_env["LOXI_AGENT_SOCKET"] = str(agent[1])
                p.agent_cpu = agent_cpu
            plugins.append(p)
            if settings.background:
                p.twin = replace(
                    p,
                    node=f"{prefix}-node0",
                    data_dir=tmp / f"ipam-{tag}0",
                    bridge=f"lxb{tag}0{run_id[:7]}",
                    background=[],
                    calls={},
                    bursts=[],
                    results={},
                    twin=None,
                )
            nodes = [p.node, *([p.twin.node] if p.twin else [])]
            log(f"{key}: creating {len(nodes) + len(p.scratch) + len(p.background)} namespaces")
            create_netns([*nodes, *p.scratch, *p.background])
            for node in nodes:
                sh(IP, "-n", node, "link", "set", "lo", "up")

        log("VERSION, and the harness floor (the same spawn of /bin/true)")
        floor: list[Call] = []
        for i in range(settings.rounds):
            for p in alternate(plugins, i):
                p.version()
            argv = [NSENTER, f"--net={netns_path(plugins[0].node)}", "--", "/bin/true"]
            floor.append(wait_one(spawn(argv, {}, b"", "floor", "true", "")))

        log("first ADD of each plugin (creates the bridge; reported apart), then its DEL")
        for p in plugins:
            for node in [p, *([p.twin] if p.twin else [])]:
                cid = node.new_container()
                call = wait_one(node.start("ADD", cid, p.scratch[0]))
                node.check_add(call, p.scratch[0])
                node.first_add = call
                node.check_del(wait_one(node.start("DEL", cid, p.scratch[0])), p.scratch[0])

        def rounds(label: str, check: bool = True) -> None:
            for i in range(settings.rounds):
                order = alternate(plugins, i)
                pod = {p.key: p.scratch[i % len(p.scratch)] for p in plugins}
                cids = {p.key: p.add(label, pod[p.key]) for p in order}
                for p in order:
                    if check:
                        p.check(label, cids[p.key], pod[p.key])
                for p in order:
                    p.delete(label, cids[p.key], pod[p.key])

        def twin_rounds(count: int) -> None:
            """ADD and DEL on the node with the background pods (`@bg`), each call beside the same call
            on the plugin's empty node (`@bg0`), the two in alternating order: the 200/0 ratio compares
            calls made seconds apart, not minutes (the machine's load drifts across a run)."""
            half = max(1, len(plugins[0].scratch) // 2)
            for i in range(count):
                order = alternate(plugins, i)
                pods = {p.key: (p.scratch[i % len(p.scratch)], p.scratch[(i + half) % len(p.scratch)]) for p in order}
                cids: dict[tuple[str, str], str] = {}
                for p in order:
                    assert p.twin is not None
                    pairs = [(p, "@bg", pods[p.key][0]), (p.twin, "@bg0", pods[p.key][1])]
                    for node, label, pod in pairs if i % 2 == 0 else pairs[::-1]:
                        cids[(p.key, label)] = node.add(label, pod)
                for p in order:
                    assert p.twin is not None
                    p.delete("@bg", cids[(p.key, "@bg")], pods[p.key][0])
                    p.twin.delete("@bg0", cids[(p.key, "@bg0")], pods[p.key][1])
            for p in plugins:
                if p.twin is not None:
                    for label, calls in p.twin.calls.items():
                        p.calls.setdefault(label, []).extend(calls)

        log(f"ADD, CHECK, DEL x {settings.rounds}, no other pod attached")
        rounds("")

        if settings.burst:
            log(f"burst: {settings.burst} ADDs {settings.width} at a time, then their DELs")
            for p in plugins:
                p.burst(settings.burst, settings.width)

        background_s: dict[str, float] = {}
        if settings.background:
            via_ref = settings.reference and settings.background_by == "reference"
            log(f"attaching {settings.background} background pods per plugin with {'bridge' if via_ref else 'itself'}")
            for p in plugins:
                background_s[p.key] = p.attach_background(settings.width, p.attacher() if via_ref else p)
            log(f"ADD, DEL x {settings.rounds}, {settings.background} pods attached, each beside one on an empty node")
            twin_rounds(settings.rounds)

        cleanup_locks(plugins)
        if agent is not None:
            agent[0].terminate()
            agent[0].wait(timeout=10)
        rows = figures(plugins, settings.background)
        return {
            "run_id": run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_s": time.time() - started,
            "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "agent_engines": engines,  # processes serving: loxi-agent's main one and its engine processes
            "settings": {
                "plugin": str(settings.plugin),
                "shim": str(settings.shim) if settings.shim else None,
                "rounds": settings.rounds,
                "background_pods": settings.background,
                "burst": settings.burst,
                "burst_width": settings.width,
                "background_by": settings.background_by if settings.reference else "self",
                "agent_engines": settings.agent_engines,
                "conf": json.loads(plugins[0].conf()),
            },
            "plugins": {
                p.key: {
                    "path": str(p.path),
                    "commands": {label: summarize(calls) for label, calls in p.calls.items()},
                    "first_add_ms": 1000 * p.first_add.wall_s if p.first_add else None,
                    "bursts": p.bursts,
                    "background_attach_s": background_s.get(p.key),
                    "samples_ms": {
                        label: [round(1000 * c.wall_s, 3) for c in calls] for label, calls in p.calls.items()
                    },
                }
                for p in plugins
            },
            "figures": rows,
            "harness_floor": summarize(floor),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="calls per command (default 20; --quick: 2)")
    parser.add_argument(
        "--background-pods",
        type=int,
        default=None,
        help="pods attached for the loaded figures (default 200; --quick: 3)",
    )
    parser.add_argument("--burst", type=int, default=None, help="ADDs in the burst (default 50; --quick: 4)")
    parser.add_argument(
        "--burst-width", type=int, default=None, help="calls in flight in a burst (default 10; --quick: 2)"
    )
    parser.add_argument(
        "--background-by",
        choices=("reference", "self"),
        default="reference",
        help="who attaches the background pods: the reference bridge plugin, on each node's bridge and store"
        " (default, seconds), or each plugin itself",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke test")
    parser.add_argument(
        "--plugin",
        type=Path,
        default=None,
        help="the loxi-cni executable (default: the launcher `loxi-plan install` writes, in a temporary directory)",
    )
    parser.add_argument("--no-reference", action="store_true", help="do not run the reference bridge plugin")
    parser.add_argument("--no-agent", action="store_true", help="do not measure loxi-cni through loxi-agent")
    parser.add_argument(
        "--shim",
        type=Path,
        default=None,
        help="the built shim for the shim+agent column (default: built now from shim/ with the machine's cc)",
    )
    parser.add_argument("--no-shim", action="store_true", help="do not measure the shim")
    parser.add_argument(
        "--agent-engines",
        type=int,
        default=None,
        metavar="N",
        help="run loxi-agent --engines N, and wait for its N-1 engine processes before measuring"
        " (default: the agent's own number, waited for until it stops growing)",
    )
    parser.add_argument("--json", type=Path, help="also write everything measured to this file")
    args = parser.parse_args(argv)

    quick = args.quick

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else (small if quick else full)

    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    if args.agent_engines is not None and args.agent_engines < 1:
        parser.error("--agent-engines must be 1 or more")
    if args.plugin is not None and not args.plugin.exists():
        parser.error(f"{args.plugin} does not exist")
    reference = (
        not args.no_reference and (REFERENCE_DIR / "bridge").exists() and (REFERENCE_DIR / "host-local").exists()
    )
    if not args.no_reference and not reference:
        log(f"{REFERENCE_DIR}/bridge or host-local is not installed: measuring loxi-cni alone")
    settings = Settings(
        rounds=max(1, pick(args.rounds, 20, 2)),
        background=max(0, pick(args.background_pods, 200, 3)),
        burst=max(0, pick(args.burst, 50, 4)),
        width=max(1, pick(args.burst_width, 10, 2)),
        plugin=args.plugin.absolute() if args.plugin else None,
        reference=reference,
        background_by=args.background_by,
        agent=not args.no_agent,
        agent_engines=args.agent_engines,
    )
    run_id = uuid.uuid4().hex[:10]
    if not args.no_agent and not args.no_shim:
        settings = replace(settings, shim=args.shim.absolute() if args.shim else build_shim(run_id))
    log(f"run {run_id}: namespaces {NS_PREFIX}{run_id}-*")
    try:
        report = run(settings, run_id)
    except KeyboardInterrupt:
        log("interrupted: namespaces removed")
        return 130
    except BenchError as err:
        log(f"FAILED: {err}")
        return 1
    m = report["machine"]
    engines = "" if report["agent_engines"] is None else f"; loxi-agent engines: {report['agent_engines']}"
    header = (
        f"loxi-cni benchmark {report['started']} on {m['host']} ({m['cpu']}, {m['cpus']} CPUs, kernel {m['kernel']}),"
        f" load {m['loadavg_before'][0]:.2f} -> {m['loadavg_after'][0]:.2f}, {report['duration_s']:.0f} s\n"
        f"{settings.rounds} calls per command, alternating plugins call by call; background {settings.background} pods;"
        f" burst {settings.burst} x {settings.width} in flight; background pods attached by"
        f" {report['settings']['background_by']}; loxi-cni = {report['settings']['plugin']}{engines}\n"
        f"wall = spawn to reap of `time nsenter --net=NODE -- PLUGIN` (floor with /bin/true:"
        f" {report['harness_floor']['median_ms']:.1f} ms median, {report['harness_floor']['cpu_mean_ms']:.1f} ms CPU);"
        f" RSS = the plugin's peak (time %M)\n"
        "CPU = user + system time of the call's processes (time, nsenter, the plugin and what it runs, from wait4)"
        " + loxi-agent's while it served the call (its main process and its engine processes, summed)"
    )
    keys = list(report["plugins"])
    print(render(report["figures"], keys, header))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
