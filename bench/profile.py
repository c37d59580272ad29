"""Where a cold loxi-cni ADD spends its time: interpreter start, imports, the rest.

    .venv/bin/python -m bench.profile [--runs N] [--top N] [--cprofile FILE]

In a throw-away node namespace (`loxibench-<run>-node`, bridge already made by
a first ADD), with only the CNI variables in the environment, as `bench.run`
calls it:

- interpreter start: `python -c pass`, and `python -I -S -c pass`;
- the whole ADD: `nsenter --net=NODE -- python -m loxi.plugin` (wall, median of N);
- imports: the same ADD under `python -X importtime` (the sum of the top-level
  cumulative times, and the largest packages);
- the rest: the same ADD under cProfile, imports excluded, the top functions by
  cumulative time.
Every ADD is followed by its DEL; the namespaces are removed in a finally.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench.run import (
    IFNAME,
    IP,
    NETWORK,
    NS_PREFIX,
    NSENTER,
    REFERENCE_DIR,
    create_netns,
    delete_netns_with_prefix,
    remove_loxi_locks,
)

# Runs loxi.plugin.cni's main as `python -m loxi.plugin` would, then prints the modules it imported.
# loxi-cni ends with posix._exit (loxi.plugin.entry.exit_now): the list is written there.
MODULES_AFTER_ADD = """
import json, posix, sys, runpy
before = set(sys.modules)
_exit = posix._exit
def list_then_exit(status):
    new = sorted(m for m in set(sys.modules) - before if not m.startswith("_"))
    sys.stdout.write("\\n" + json.dumps(new) + "\\n")
    sys.stdout.flush()
    _exit(status)
posix._exit = list_then_exit
runpy.run_module("loxi.plugin", run_name="__main__")
"""

# `python -m cProfile` writes its data at interpreter exit, which loxi-cni skips (posix._exit):
# the profile is written there instead.
PROFILED_ADD = """
import cProfile, posix, runpy, sys
profiler = cProfile.Profile()
_exit = posix._exit
def save_then_exit(status):
    profiler.disable()
    profiler.dump_stats(sys.argv[1])
    _exit(status)
posix._exit = save_then_exit
profiler.enable()
runpy.run_module("loxi.plugin", run_name="__main__")
"""


def conf(data_dir: Path, bridge: str) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "loxi-cni",
            "bridge": bridge,
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.203.0.0/16", "dataDir": str(data_dir)},
        }
    ).encode()


def env(command: str, cid: str, pod: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/var/run/netns/{pod}",
        "CNI_IFNAME": IFNAME,
        "CNI_PATH": str(REFERENCE_DIR),
    }


def timed(argv: list[str], environ: dict[str, str], stdin: bytes = b"") -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=environ, cwd="/")
    return time.perf_counter() - t0, proc


def parse_importtime(stderr: str) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, name with its indentation) for each `import time:` line."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line.split(":", 1)[1].split("|", 2)
        rows.append((int(self_us), int(cum_us), name.rstrip()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--cprofile", type=Path, help="keep the cProfile data of one ADD here")
    args = parser.parse_args(argv)
    python = str(Path(sys.prefix) / "bin" / "python")
    run_id = uuid.uuid4().hex[:10]
    prefix = f"{NS_PREFIX}{run_id}-"
    node, pod = f"{prefix}node", f"{prefix}pod"
    tmp = Path(tempfile.mkdtemp(prefix="loxibench-"))
    bridge = f"lxbp{run_id[:8]}"
    stdin = conf(tmp / "ipam", bridge)
    seq = iter(range(1_000_000))
    out = sys.stdout
    try:
        create_netns([node, pod])
        subprocess.run([IP, "-n", node, "link", "set", "lo", "up"], check=True)

        def add_del(pre: list[str]) -> tuple[float, subprocess.CompletedProcess]:
            cid = f"{run_id}-{next(seq)}"
            wall, proc = timed([NSENTER, f"--net=/var/run/netns/{node}", "--", *pre], env("ADD", cid, pod), stdin)
            if proc.returncode != 0:
                raise SystemExit(f"ADD failed: {proc.stdout.decode()} {proc.stderr.decode()[-2000:]}")
            plugin = [python, "-m", "loxi.plugin"]
            dl = subprocess.run(
                [NSENTER, f"--net=/var/run/netns/{node}", "--", *plugin], input=stdin, env=env("DEL", cid, pod)
            )
            if dl.returncode != 0:
                raise SystemExit("DEL failed")
            return wall, proc

        add_del([python, "-m", "loxi.plugin"])  # makes the bridge: not measured

        starts = [timed([python, "-c", "pass"], {})[0] for _ in range(args.runs * 2)]
        isolated = [timed([python, "-I", "-S", "-c", "pass"], {})[0] for _ in range(args.runs * 2)]
        adds = [add_del([python, "-m", "loxi.plugin"])[0] for _ in range(args.runs)]
        # the modules a real ADD ends up with, imported and nothing else (no -X importtime overhead)
        _, proc = add_del([python, "-c", MODULES_AFTER_ADD])
        modules = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        # the lean loaders first, as in the ADD: they keep pyroute2 and networkx from running their
        # package __init__s (`import networkx` is then the registered module, not the whole package)
        lean = ["applier.netlink", "compiler.networkx_lean"]
        # ended as loxi-cni ends (posix._exit): tearing the modules down again is not import time
        importer = "import " + ", ".join(lean + [m for m in modules if m not in lean])
        importer += "; import posix; posix._exit(0)"
        only_imports = []
        for _ in range(args.runs):
            wall, proc = timed([python, "-c", importer], {}, b"")
            if proc.returncode != 0:
                raise SystemExit(f"importing the ADD's modules failed: {proc.stderr.decode()[-2000:]}")
            only_imports.append(wall)
        imports: list[int] = []
        last: list[tuple[int, int, str]] = []
        for _ in range(args.runs):
            _, proc = add_del([python, "-X", "importtime", "-m", "loxi.plugin"])
            last = parse_importtime(proc.stderr.decode())
            imports.append(sum(cum for _, cum, name in last if not name.startswith("  ")))
        prof = args.cprofile or tmp / "add.prof"
        add_del([python, "-c", PROFILED_ADD, str(prof)])

        ms = 1000
        start_ms, add_ms, imp_ms = (
            ms * statistics.median(starts),
            ms * statistics.median(adds),
            statistics.median(imports) / 1000,
        )
        print(f"loxi-cni cold ADD, {args.runs} runs each (medians), load {os.getloadavg()[0]:.2f}", file=out)
        print(f"  interpreter start   python -c pass        {start_ms:8.1f} ms", file=out)
        print(f"                      python -I -S -c pass  {ms * statistics.median(isolated):8.1f} ms", file=out)
        print(f"  whole ADD           nsenter + python -m loxi.plugin {add_ms:8.1f} ms", file=out)
        imp_wall = ms * statistics.median(only_imports) - start_ms
        print(
            f"  imports, -X importtime (top-level cumulative sum, inflated by the tracing) {imp_ms:8.1f} ms", file=out
        )
        print(
            f"  imports, wall of `python -c 'import <the ADD's {len(modules)} modules>'` - start {imp_wall:8.1f} ms",
            file=out,
        )
        print(f"  the rest (whole ADD - start - imports by wall)    {add_ms - start_ms - imp_wall:8.1f} ms", file=out)

        top_level = defaultdict(int)
        for _, cum, name in last:
            stripped = name.strip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth == 0:
                top_level[stripped.split(".")[0]] += cum
        print(
            "\n  largest top-level imports of the last run (cumulative ms, -X importtime adds its own overhead):",
            file=out,
        )
        for pkg, cum in sorted(top_level.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"    {cum / 1000:8.1f}  {pkg}", file=out)
        by_cum = sorted(last, key=lambda r: -r[1])[: args.top]
        print("\n  largest single imports, any depth (cumulative ms / self ms):", file=out)
        for self_us, cum, name in by_cum:
            print(f"    {cum / 1000:8.1f} {self_us / 1000:7.1f}  {name.strip()}", file=out)

        stats = pstats.Stats(str(prof), stream=out)
        print("\n  cProfile of one ADD, top functions by cumulative time (imports included in the tree):", file=out)
        stats.sort_stats("cumulative").print_stats(args.top * 2)
    finally:
        delete_netns_with_prefix(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
        remove_loxi_locks(bridge, [f"{run_id}-{i}" for i in range(next(seq))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
