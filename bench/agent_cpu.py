"""loxi-agent's own CPU per pod over bursts of ADDs and DELs, and A/B between checkouts.

    sudo .venv/bin/python -m bench.agent_cpu [--runs N] [--burst 50] [--width 10] [--root DIR ...]
        [--agent-arg=--workers=4 ...] [--stub-engine] [--cprofile FILE [--profile-cpu]]

On a loaded machine wall time says little; the agent's CPU clocks (every thread,
ended ones included, of its main process and of each of its engine processes:
bench.run's `AgentCpu`) read before and after a burst say what the agent spent on
it, and /proc/PID/stat splits it into user (Python) and system (the kernel's work
for it: netlink, fsync, setns), in 10 ms ticks, summed the same way. Each run waits
for the agent's engine processes to be up and idle before its first call
(`--agent-arg=--engines=N`: for N-1 of them; bench.run's `wait_for_engines`).
Each `--root` is a checkout the agent is run from (`PYTHONPATH=ROOT`, the bench's
own virtualenv for the libraries), so `git worktree add` gives the "before" side
of a change. Roots are interleaved run by run, their order
alternating, so that load from elsewhere hits each alike; compare the medians.

Each (run, root) gets its own throw-away node namespace, bridge, IPAM store and
pod namespaces, and its own agent (in this process's namespace, as bench.run
starts it). The calls go as the thin client sends them (loxi.plugin.client's
`call_agent`, from client threads that entered the node namespace), `--width`
in flight at a time; the client's own CPU is not counted (its process is this
one). A few warm-up ADD/CHECK/DEL rounds come first, as bench.run's rounds come
before its burst. A call the client would have run in-process (the agent
refused or broke off, or its listen backlog was full) is counted as a fallback
and sent again; a call that fails stops the run.

`--stub-engine` replaces the engine with one that answers `{}` at once: what is
left is the agent's own layer (accept, protocol, namespaces, metrics). It, and
`--cprofile`, act in the agent's main process only: its engine processes run
loxi.agent.engine as it is, so use them with `--agent-arg=--engines=1`.
`--cprofile FILE` runs the agent with a cProfile per request (the request
handler wrapped in the agent process), enabled for the ADD bursts only, and
prints the top functions by own time; `--profile-cpu` times them on each
thread's CPU clock (its waits for the GIL and the kernel left out, at a system
call per event). Deterministic profiling inflates small functions several
times: read the ranking, not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.run import (
    IP,
    NS_PREFIX,
    AgentCpu,
    create_netns,
    delete_netns_with_prefix,
    remove_loxi_locks,
    wait_for_engines,
)
from bench.warm import conf, environ, in_netns

WARMUP = 3
RETRIES = 100
# loxi-agent's main, with what the bench asked for through the environment: LOXIBENCH_PROFILE=PATH runs the
# request handler (its name in this checkout, or in an older one) under a cProfile per call, switched on by
# SIGUSR1 and dumped to PATH by SIGUSR2 (LOXIBENCH_PROFILE_CPU=1: the thread's CPU clock as the timer, which
# leaves out its waits for the GIL but costs a system call per event); LOXIBENCH_STUB_ENGINE=1 replaces the
# engine (`loxi.plugin.cni.run` as the handler calls it) with one that answers `{}` at once, so that what is
# left is the agent's own layer: accept, protocol, namespaces, metrics.
AGENT_MAIN = """
import importlib, os, signal, sys, threading, time
HANDLERS = (("loxi.agent.handler", "Handler"), ("loxi.agent.daemon", "Handler"))
def handler_module():
    for module, owner in HANDLERS:
        try:
            return importlib.import_module(module), owner
        except ImportError:
            continue
    raise SystemExit("no request handler found")
if os.environ.get("LOXIBENCH_STUB_ENGINE") == "1":
    def stub_run(environ, stdin, stdout, stderr):
        stdout.write("{}")
        return 0
    handler_module()[0].run = stub_run
path = os.environ.get("LOXIBENCH_PROFILE")
if path:
    import cProfile, pstats
    profiles, lock, on = [], threading.Lock(), [False]
    timer = (time.thread_time,) if os.environ.get("LOXIBENCH_PROFILE_CPU") == "1" else ()
    module, owner = handler_module()
    target = getattr(module, owner)
    real = target.handle
    def wrapped(*args, **kwargs):
        if not on[0]:
            return real(*args, **kwargs)
        profile = cProfile.Profile(*timer)
        profile.enable()
        try:
            return real(*args, **kwargs)
        finally:
            profile.disable()
            with lock:
                profiles.append(profile)
    target.handle = wrapped
    def start(*_):
        with lock:
            profiles.clear()
        on[0] = True
    def dump(*_):
        on[0] = False
        with lock:
            if profiles:
                pstats.Stats(*profiles).dump_stats(path)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
sys.argv[0] = "loxi-agent"
from loxi.agent.daemon import main
main()
"""


def engines_asked(agent_args: list[str]) -> int | None:
    """N of an `--engines N` (or `--engines=N`) among the agent's arguments, or None."""
    for i, arg in enumerate(agent_args):
        if arg.startswith("--engines="):
            return int(arg.partition("=")[2])
        if arg == "--engines" and i + 1 < len(agent_args):
            return int(agent_args[i + 1])
    return None


class Agent:
    def __init__(self, root: Path, sock: Path, args: list[str], env: dict[str, str]) -> None:
        env = {**os.environ, **env, "PYTHONPATH": str(root)}
        self.log = open(os.environ.get("LOXIBENCH_AGENT_LOG", os.devnull), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT_MAIN, "--socket", str(sock), "--no-reconcile", *args],
            env=env,
            cwd="/",
            stderr=self.log,
        )
        self.log.close()  # the child has its own copy
        for _ in range(600):
            if sock.exists():
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"the agent of {root} exited with {self.proc.returncode}")
            time.sleep(0.05)
        else:
            raise SystemExit(f"the agent of {root} did not start")
        self.cpu = AgentCpu(self.proc.pid)
        self.engines = wait_for_engines(self.proc, self.cpu, engines_asked(args))
        self.socket = str(sock).encode()
        self.fallbacks = 0  # calls the client would have run in-process

    def cpu_s(self) -> float:
        """The agent's CPU seconds, its engine processes' included (listed again: a burst is read seconds apart)."""
        return self.cpu.cpu_s(refresh=True)

    def user_sys_s(self) -> tuple[float, float]:
        """utime and stime from /proc/PID/stat (clock ticks, every thread, engines summed): how the CPU splits."""
        return self.cpu.user_sys_s()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def one_call(agent: Agent, command: str, cid: str, pod: str, stdin: bytes) -> bytes:
    """The call through the agent. Where the client would have run it in-process (the agent refused, broke
    off, or its listen backlog was full: connect fails with EAGAIN), it is counted and sent again."""
    from loxi.plugin.client import call_agent

    env = {k.encode(): v.encode() for k, v in environ(command, cid, pod).items()}
    env[b"LOXI_AGENT_SOCKET"] = agent.socket
    for _ in range(RETRIES):
        answer = call_agent(env, stdin)
        if answer is not None:
            break
        agent.fallbacks += 1
        time.sleep(0.01)
    else:
        raise SystemExit(f"{command} {cid}: the agent refused or broke off {RETRIES} times")
    if answer[0] != 0:
        raise SystemExit(f"{command} {cid} failed: {answer[1][-2000:]!r}")
    return answer[1]


def one_run(root: Path, tmp: Path, burst: int, width: int, agent_args: list[str], env: dict[str, str]) -> dict:
    """{"ADD": ms of agent CPU per pod, "DEL": ...} of one burst of each, with a fresh agent and node."""
    prefix = f"{NS_PREFIX}{uuid.uuid4().hex[:10]}-"
    node, bridge = f"{prefix}node", f"lxbc{prefix[len(NS_PREFIX) : len(NS_PREFIX) + 8]}"
    pods = [f"{prefix}p{i}" for i in range(burst + WARMUP)]
    work = Path(tempfile.mkdtemp(dir=tmp))
    data_dir = work / "ipam"
    cids = [f"{prefix}{i}" for i in range(len(pods))]
    agent = None
    try:
        create_netns([node, *pods])
        subprocess.run([IP, "-n", node, "link", "set", "lo", "up"], check=True)
        agent = Agent(root, work / "agent.sock", agent_args, env)
        profile = "LOXIBENCH_PROFILE" in env
        figures: dict[str, float] = {"engines": agent.engines}  # processes serving: main + engine processes
        with ThreadPoolExecutor(width, initializer=in_netns, initargs=(node,)) as clients:
            for i in range(WARMUP):  # the bridge, and the lazy imports of every command (of whichever engine)
                result = json.loads(one_call(agent, "ADD", cids[i], pods[i], conf(data_dir, bridge)))
                one_call(agent, "CHECK", cids[i], pods[i], conf(data_dir, bridge, result))
                one_call(agent, "DEL", cids[i], pods[i], conf(data_dir, bridge))
            for command in ("ADD", "DEL"):
                if profile and command == "ADD":
                    agent.proc.send_signal(signal.SIGUSR1)
                    time.sleep(0.1)
                jobs = range(WARMUP, len(pods))
                before, fell_back, (user, system) = agent.cpu_s(), agent.fallbacks, agent.user_sys_s()
                stdin = conf(data_dir, bridge)
                list(clients.map(lambda i, c=command, s=stdin: one_call(agent, c, cids[i], pods[i], s), jobs))
                figures[command] = (agent.cpu_s() - before) * 1000 / burst
                user_after, system_after = agent.user_sys_s()
                figures[f"{command} user"] = (user_after - user) * 1000 / burst
                figures[f"{command} sys"] = (system_after - system) * 1000 / burst
                figures[f"{command} fallbacks"] = agent.fallbacks - fell_back
                if profile and command == "ADD":
                    agent.proc.send_signal(signal.SIGUSR2)
        return figures
    finally:
        if agent is not None:
            agent.stop()
        delete_netns_with_prefix(prefix)
        remove_loxi_locks(bridge, cids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--root", action="append", type=Path, help="a checkout to run the agent from (repeatable)")
    parser.add_argument("--agent-arg", action="append", default=[], help="passed to every agent (repeatable)")
    parser.add_argument("--cprofile", type=Path, help="profile the agent's ADDs (first root, every run) into FILE")
    parser.add_argument("--profile-cpu", action="store_true", help="--cprofile on the threads' CPU clock")
    parser.add_argument("--stub-engine", action="store_true", help="an engine that answers at once: the agent alone")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    roots = [r.resolve() for r in args.root or [Path(__file__).resolve().parent.parent]]
    samples: dict[Path, dict[str, list[float]]] = {r: defaultdict(list) for r in roots}
    tmp = Path(tempfile.mkdtemp(prefix="loxibench-cpu-"))
    parts: list[str] = []
    try:
        for run in range(args.runs):
            order = roots if run % 2 == 0 else roots[::-1]
            for root in order:
                env = {"LOXIBENCH_STUB_ENGINE": "1"} if args.stub_engine else {}
                if args.cprofile and root == roots[0]:
                    env["LOXIBENCH_PROFILE"] = str(tmp / f"profile-{run}")
                    env["LOXIBENCH_PROFILE_CPU"] = "1" if args.profile_cpu else "0"
                    parts.append(env["LOXIBENCH_PROFILE"])
                got = one_run(root, tmp, args.burst, args.width, args.agent_arg, env)
                for command, ms in got.items():
                    samples[root][command].append(ms)
                print(f"run {run} {root}: " + ", ".join(f"{k} {v:.2f}" for k, v in got.items()), file=sys.stderr)
        print(f"loxi-agent CPU per pod (ms), bursts of {args.burst} x{args.width}, {args.runs} runs, medians [all];")
        print("  fallbacks: calls the client would have run in-process (sent again here), per burst")
        for root, by_command in samples.items():
            cells = "  ".join(
                f"{c} {statistics.median(v):5.2f} [{' '.join(f'{x:.4g}' for x in v)}]" for c, v in by_command.items()
            )
            print(f"  {root}: {cells}")
        if args.cprofile:
            found = [p for p in parts if os.path.exists(p)]
            if found:
                pstats.Stats(*found).dump_stats(str(args.cprofile))
                stats = pstats.Stats(str(args.cprofile), stream=sys.stdout)
                print(f"\n  cProfile of the agent's ADDs ({args.runs} bursts of {args.burst}), by own time:")
                stats.sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
