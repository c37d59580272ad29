"""Host-side driver of the kernel tier, plus checks of the harness itself.

``test_guest_tier`` boots two guests at once and runs every test in ``guest/`` in them, through
loxi-agent (a cold Python process per call costs ~5 s under emulation, a thin client
~1 s; the in-process path runs on node ``a`` of ``test_two_nodes.py``). The other tests
prove what the guest can rely on, and that a guest that hangs or dies is reported.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .qemu import (
    GUEST_TMPFS_DIRS,
    GuestError,
    KernelCache,
    default_guest_env,
    extract_vmlinux,
    guest_pytest_argv,
    module_load_order,
    pytest_outcomes,
    run_in_guest,
    start_guest,
)

pytestmark = pytest.mark.guest

GUEST_DIR = Path(__file__).parent / "guest"
REPO = Path(__file__).resolve().parents[2]


def guest_test_groups(files: list[Path], groups: int = 2) -> list[list[Path]]:
    """Split the guest's test files into ``groups`` of about equal size (a proxy for their time)."""
    split: list[list[Path]] = [[] for _ in range(groups)]
    for path in sorted(files, key=lambda p: (-p.stat().st_size, p.name)):
        min(split, key=lambda g: sum(p.stat().st_size for p in g)).append(path)
    return [sorted(group) for group in split if group]


def test_guest_tier(guest_kernel: KernelCache, request: pytest.FixtureRequest) -> None:
    """Every test in guest/, in two guests at once (the emulation is CPU-bound: one guest a core)."""
    config = request.config
    base = [f"--rootdir={config.rootpath}", *(["-c", str(config.inipath)] if config.inipath else [])]
    files = sorted(GUEST_DIR.glob("test_*.py"))
    start = time.monotonic()
    guests = [
        start_guest(
            guest_pytest_argv([str(p) for p in group], base),
            cwd=str(config.rootpath),
            env=default_guest_env({"LOXI_TEST_MODE": "agent"}),
            timeout=600,
            name=f"tier-{i}",
        )
        for i, group in enumerate(guest_test_groups(files))
    ]
    runs = [guest.wait() for guest in guests]
    seconds = time.monotonic() - start
    for run in runs:
        print(f"\n--- guest output ({run.engine}, {run.seconds:.0f}s) ---\n{run.output}")
    print(f"--- guest tier: {len(runs)} guests at once, {seconds:.1f}s ---")
    passed = 0
    for run in runs:
        assert run.returncode == 0, f"guest pytest exited {run.returncode}:\n{run.output}"
        outcomes = pytest_outcomes(run.output)
        assert not outcomes.get("skipped"), f"guest tests were skipped inside the guest:\n{run.output}"
        passed += outcomes.get("passed", 0)
    assert passed >= 14, f"only {passed} guest tests passed"


def test_guest_test_groups_cover_every_file_once() -> None:
    files = sorted(GUEST_DIR.glob("test_*.py"))
    groups = guest_test_groups(files)
    assert sorted(p for g in groups for p in g) == files and len(groups) == min(2, len(files))


def test_the_guest_sees_this_checkout_its_tmpfs_modules_and_environment(guest_kernel: KernelCache) -> None:
    """Exit status, output bytes, env, cwd, private tmpfs mounts, modules (also autoloaded), and
    this virtualenv's python with its site-packages: what every guest test runs on."""
    script = f"""
        echo "flag=$LOXI_IN_GUEST probe=$PROBE cwd=$(pwd) kernel=$(uname -r)"
        for d in /run /dev/shm {" ".join(GUEST_TMPFS_DIRS)}; do
            grep -q " $d tmpfs " /proc/mounts && echo "tmpfs:$d"
        done
        for m in bridge 8021q veth; do [ -d /sys/module/$m ] && echo "module:$m"; done
        nft add table inet loxiprobe && echo "autoloaded:nf_tables"
        echo leak > /etc/cni/net.d/guest-probe.conflist
        grep -m1 "model name" /proc/cpuinfo | sed "s/.*: /cpu=/"
        printf 'no newline \\001\\377'
        {shlex.quote(sys.executable)} -c 'import sys, markupsafe; print("\\nprefix=" + sys.prefix)'
        exit 7
    """
    env = default_guest_env({"PROBE": "a b'c"})
    run = run_in_guest(["/bin/sh", "-c", script], cwd=str(REPO), env=env, timeout=180)
    print(f"\n--- harness check ({run.engine}): {run.seconds:.1f}s ---\n{run.output}")
    assert run.returncode == 7, run.output
    assert run.engine in ("qemu/tcg", "qemu/kvm")
    assert f"flag=1 probe=a b'c cwd={REPO} kernel={guest_kernel.version}" in run.output
    assert "\r" not in run.output
    for d in ("/run", "/dev/shm", *GUEST_TMPFS_DIRS):
        assert f"tmpfs:{d}\n" in run.output
    for m in ("bridge", "8021q", "veth"):
        assert f"module:{m}\n" in run.output
    assert "autoloaded:nf_tables\n" in run.output
    assert b"no newline \x01\xff\nprefix=" in run.raw, "output comes back byte for byte"
    assert f"prefix={sys.prefix}\n" in run.output
    assert not os.path.exists("/etc/cni/net.d/guest-probe.conflist")
    if run.engine == "qemu/tcg":  # the guest runs on an emulated CPU, whatever the host's (AMX or not)
        assert "cpu=QEMU TCG CPU" in run.output, run.output


def test_a_guest_that_never_finished_is_a_harness_error(guest_kernel: KernelCache) -> None:
    """A guest that dies before its command ends reports no status: an error carrying the console."""
    argv = ["/bin/sh", "-c", "echo about-to-die > /dev/console; echo b > /proc/sysrq-trigger; sleep 30"]
    with pytest.raises(GuestError, match="never reported an exit status") as info:
        run_in_guest(argv, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert "about-to-die" in info.value.output


def test_the_timeout_kills_a_hung_guest_and_leaves_no_process(guest_kernel: KernelCache) -> None:
    start = time.monotonic()
    with pytest.raises(GuestError, match="timed out"):
        run_in_guest(["/bin/sh", "-c", "sleep 600"], cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=6, name="hung")
    assert time.monotonic() - start < 25
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _is_our_qemu(p)]
    assert leftovers == [], f"qemu processes left behind: {leftovers}"


def _is_our_qemu(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"qemu-system-x86_64") and any(b"loxi-hung-" in a for a in argv)


def test_module_order_loads_dependencies_first(guest_kernel: KernelCache) -> None:
    order = module_load_order(guest_kernel.modroot / "lib" / "modules" / guest_kernel.version, ["8021q", "veth"])
    names = [Path(p).name for p in order]
    assert names.index("garp.ko") < names.index("8021q.ko") and names.index("mrp.ko") < names.index("8021q.ko")
    assert names[-1] == "veth.ko"


def test_vlinux_extraction_refuses_a_file_without_a_kernel() -> None:
    with pytest.raises(GuestError, match="no xz or gzip ELF payload"):
        extract_vmlinux(b"MZ" + b"\0" * 4096)


@pytest.mark.parametrize(
    ("variables", "outcome", "said"),
    [
        ({"LOXI_QEMU": "/nonexistent/qemu"}, "error", "no second kernel can run on this machine: /nonexistent/qemu"),
        ({"LOXI_KERNEL_ACCEL": "fast"}, "error", "LOXI_KERNEL_ACCEL='fast': expected auto, tcg or kvm"),
        ({"LOXI_QEMU": "/nonexistent/qemu", "LOXI_SKIP_KERNEL_TIER": "1"}, "skipped", "skipped on purpose"),
    ],
)
def test_without_a_second_kernel_the_tier_fails_and_says_why(variables, outcome, said) -> None:
    """It never passes by skipping: only the documented variable skips it."""
    env = {**os.environ, **variables}
    env.pop("PYTEST_ADDOPTS", None)
    target = f"{Path(__file__)}::test_module_order_loads_dependencies_first"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", target],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=120,
    )
    assert f"1 {outcome}" in proc.stdout, proc.stdout
    assert said in proc.stdout, proc.stdout
    assert (proc.returncode == 0) == (outcome == "skipped"), proc.stdout
