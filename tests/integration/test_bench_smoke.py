"""The benchmark command runs end to end (`--quick`), reports every figure, and leaves no namespace behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REFERENCE_CNI_DIR, REPO, needs_root, plugin_path, sh


def _bench_namespaces() -> set[str]:
    out = sh("ip", "netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("loxibench-")}


@needs_root
def test_quick_benchmark_reports_both_plugins_and_cleans_up(tmp_path: Path):
    assert plugin_path().exists(), f"{plugin_path()} is not installed: run scripts/setup"
    before = _bench_namespaces()
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--plugin", str(plugin_path()), "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr[-3000:]}"
    report = json.loads(out.read_text())

    run_id = report["run_id"]
    assert run_id
    left = {name for name in _bench_namespaces() - before if run_id in name}
    assert not left, f"namespaces left behind: {sorted(left)}"
    assert not any(run_id in name for name in _bench_namespaces())

    reference = (REFERENCE_CNI_DIR / "bridge").exists() and (REFERENCE_CNI_DIR / "host-local").exists()
    expected = ["loxi-cni", "loxi-cni+agent", "bridge"] if reference else ["loxi-cni", "loxi-cni+agent"]
    if shutil.which("cc"):  # the shim, built by the bench from shim/, through the same agent
        expected.append("shim+agent")
    assert sorted(report["plugins"]) == sorted(expected)
    for key in expected:
        commands = report["plugins"][key]["commands"]
        for command in ("VERSION", "ADD", "CHECK", "DEL", "ADD@bg", "DEL@bg"):
            stats = commands[command]
            assert stats["n"] >= 1
            assert 0 < stats["median_ms"] <= stats["p95_ms"] <= stats["max_ms"]
            assert stats["peak_rss_median_mb"] > 0
        burst = report["plugins"][key]["bursts"][0]
        assert burst["add_total_s"] > 0 and burst["add_pods_per_s"] > 0 and burst["del_total_s"] > 0

    figures = {row["figure"]: row for row in report["figures"]}
    for name in ("VERSION median", "ADD median", "CHECK median", "DEL median", "ADD median, 0 pods attached"):
        row = figures[name]
        for key in expected:
            assert row[key] > 0, (name, row)
        if reference:
            assert row["ratio"] == row["loxi-cni"] / row["bridge"]
            assert row["ratio_agent"] == row["loxi-cni+agent"] / row["bridge"]
            if "shim+agent" in expected:
                assert row["ratio_shim"] == row["shim+agent"] / row["bridge"]
    # CPU: the call's processes from wait4 (never less than the harness's own /bin/true call), and
    # loxi-agent's share only in its column; an ADD through the agent costs the agent CPU time.
    floor_cpu = report["harness_floor"]["cpu_mean_ms"]
    assert floor_cpu > 0
    for command in ("ADD", "CHECK", "DEL"):
        row = figures[f"{command} CPU, processes + agent (mean)"]
        assert all(row[key] > floor_cpu for key in expected), (row, floor_cpu)
        share = figures[f"{command} CPU, of which loxi-agent (mean)"]
        assert share["loxi-cni+agent"] > 0 and share["loxi-cni"] is None, share
        assert share["loxi-cni+agent"] < row["loxi-cni+agent"]
        if "shim+agent" in expected:
            assert 0 < share["shim+agent"] < row["shim+agent"], share
        if reference:
            assert share["bridge"] is None and share["ratio_agent"] is None
    assert figures["VERSION CPU, of which loxi-agent (mean)"]["loxi-cni+agent"] < 1  # the client answers VERSION
    # CRI-O runs CHECK right after every ADD: a pod costs the pair, each pod's ADD plus its own CHECK
    pair = figures["ADD+CHECK pair median (CRI-O)"]
    for key in expected:
        adds = report["plugins"][key]["samples_ms"]["ADD"]
        checks = report["plugins"][key]["samples_ms"]["CHECK"]
        assert min(adds) + min(checks) - 0.01 <= pair[key] <= max(adds) + max(checks) + 0.01, (pair, key)
    assert figures["ADD+CHECK pair CPU, processes + agent (mean)"]["loxi-cni+agent"] > 0
    background = report["settings"]["background_pods"]
    loaded = figures[f"ADD median, {background} pods attached"]
    assert all(loaded[key] > 0 for key in expected)
    # the ratio's 0 is the ADDs on each plugin's empty twin node, made beside the loaded ones
    beside = figures["ADD median, 0 pods attached, beside those"]
    ratio = figures[f"ADD median {background} pods / 0 pods"]
    assert all(abs(ratio[key] - loaded[key] / beside[key]) < 1e-9 for key in expected), (ratio, loaded, beside)
    assert all(len(report["plugins"][key]["samples_ms"]["ADD@bg0"]) == report["settings"]["rounds"] for key in expected)
    assert any(name.startswith("burst ") and name.endswith("pods/s") for name in figures)
    assert "loxi-cni" in proc.stdout and "ADD median" in proc.stdout
    # the agent's CPU is summed over its engine processes, which the run waited for and names
    assert report["agent_engines"] >= 1
    assert f"loxi-agent engines: {report['agent_engines']}" in proc.stdout


# A stand-in for loxi-agent: two engine processes (`loxi.agent.engine` in their command line) that
# spend CPU, one of them exiting and replaced by a third, and a child that is not an engine.
# (Its own command line must not name the engine module: a child between fork and exec shows it.)
_FAKE_AGENT = """
import subprocess, sys, time
BUSY = ("import sys, time; 'loxi.agent." + "engine'; t = time.process_time()\\n"
        "while time.process_time() - t < float(sys.argv[1]): pass\\ntime.sleep(float(sys.argv[2]))")
engines = [subprocess.Popen([sys.executable, "-c", BUSY, "0.2", "60"]),
           subprocess.Popen([sys.executable, "-c", BUSY, "0.2", "0.3"])]
other = subprocess.Popen([sys.executable, "-c", "import time; t = time.process_time()\\n"
                          "while time.process_time() - t < 0.3: pass\\ntime.sleep(60)"])
engines[1].wait()
engines.append(subprocess.Popen([sys.executable, "-c", BUSY, "0.2", "60"]))
time.sleep(60)
"""


def test_agent_cpu_sums_engine_processes_found_late_and_keeps_the_exited_ones():
    """bench.run.AgentCpu: the main process's clock plus each engine child's; a child that appears
    later counts, one that has exited keeps its last reading, a non-engine child is not counted."""
    import os
    import signal
    import time

    from bench.run import AgentCpu, children_of

    agent = subprocess.Popen([sys.executable, "-c", _FAKE_AGENT])
    try:
        cpu = AgentCpu(agent.pid)
        readings, seen = [], set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            readings.append(cpu.cpu_s())
            seen |= set(cpu.live)
            if len(seen) == 3 and len(cpu.live) == 2 and cpu.exited_s > 0 and readings[-1] >= 0.6:
                break
            time.sleep(0.05)
        assert len(seen) == 3 and len(cpu.live) == 2, (seen, cpu.live)
        assert len(children_of(agent.pid)) == 3  # the non-engine child is there, and not among them
        assert readings == sorted(readings)  # never backwards, across the exit and the respawn
        assert 0.6 <= readings[-1] < 0.9  # three engines' 0.2 s and their start; not the other child's 0.3 s
        user, system = cpu.user_sys_s()
        assert user + system > 0.25  # in 10 ms ticks; the third engine may still be busy
        for pid in list(cpu.live):
            os.kill(pid, signal.SIGKILL)
        agent.kill()
        agent.wait()
        time.sleep(0.2)
        final = cpu.cpu_s(refresh=True)  # every clock gone: the last values, no error
        assert final >= readings[-1] and cpu.engines() == 0
    finally:
        agent.kill()
        agent.wait()


@needs_root
def test_warm_profile_reports_phases_netlink_and_client_and_cleans_up():
    before = _bench_namespaces()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.warm", "--runs", "2"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr[-3000:]}"
    rows = {line[:30].strip(): line[30:].split() for line in proc.stdout.splitlines() if line.startswith("  ")}
    add, check, delete = (float(x) for x in rows["whole call"])
    assert add > 0 and check > 0 and delete > 0
    requests = [float(x) for x in rows["netlink requests"]]
    assert all(n >= 1 for n in requests), requests
    assert float(rows["ipam: allocate"][0]) > 0 and float(rows["ipam: allocate"][1]) == 0  # ADD allocates, CHECK not
    assert "loxi-cni launcher -> stub agent" in proc.stdout and "python -I -S -c pass" in proc.stdout
    assert _bench_namespaces() == before


@needs_root
def test_cold_profile_reports_start_imports_and_a_cprofile_and_cleans_up(tmp_path: Path):
    """bench.profile, run as documented: every section, the cProfile of one ADD (written although
    loxi-cni ends with posix._exit), and no namespace left."""
    before = _bench_namespaces()
    prof = tmp_path / "add.prof"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--runs", "1", "--cprofile", str(prof)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr[-3000:]}"
    for section in ("python -I -S -c pass", "whole ADD", "imports, wall of", "largest single imports", "cProfile of"):
        assert section in proc.stdout, section
    assert prof.stat().st_size > 0 and "loxi/engine/add.py" in proc.stdout
    assert _bench_namespaces() == before
