"""Host-side driver of the UML kernel tier, plus checks of the harness itself.

``test_guest_tier`` boots User-Mode Linux once and runs every test in ``guest/`` inside it.
All tests here are skipped (with the reason) when no UML kernel is installed.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from .uml import GUEST_TMPFS_DIRS, UmlError, UmlKernel, UmlPytest, default_guest_env, pytest_outcomes, run_in_uml

pytestmark = pytest.mark.uml

GUEST_DIR = Path(__file__).parent / "guest"
REPO = Path(__file__).resolve().parents[2]


def test_guest_tier(uml_pytest: UmlPytest) -> None:
    start = time.monotonic()
    rc, output = uml_pytest([str(GUEST_DIR)])
    seconds = time.monotonic() - start
    print(f"\n--- UML guest output ---\n{output}--- UML tier: one boot, {seconds:.1f}s ---")
    assert rc == 0, f"guest pytest exited {rc}:\n{output}"
    outcomes = pytest_outcomes(output)
    assert outcomes.get("passed", 0) > 0, f"no guest test passed:\n{output}"
    assert not outcomes.get("skipped"), f"guest tests were skipped inside UML:\n{output}"


def test_run_in_uml_environment(uml_kernel: UmlKernel) -> None:
    """Exit status, env, cwd, private tmpfs mounts, modules, and this venv's python with its
    site-packages (what the guest's tests run on) all work in the guest."""
    script = f"""
        echo "flag=$LOXI_IN_UML probe=$PROBE cwd=$(pwd)"
        for d in /run /dev/shm {" ".join(GUEST_TMPFS_DIRS)}; do
            grep -q " $d tmpfs " /proc/mounts && echo "tmpfs:$d"
        done
        for m in bridge 8021q veth; do [ -d /sys/module/$m ] && echo "module:$m"; done
        echo leak > /etc/cni/net.d/uml-probe.conflist
        {shlex.quote(sys.executable)} -c 'import sys, pyroute2; print("prefix=" + sys.prefix)'
        exit 7
    """
    run = run_in_uml(["/bin/sh", "-c", script], cwd=str(REPO), env=default_guest_env({"PROBE": "a b'c"}), timeout=120)
    print(f"\n--- harness check: {run.seconds:.1f}s ---\n{run.output}")
    assert run.returncode == 7, run.output
    assert "\r" not in run.output
    assert f"flag=1 probe=a b'c cwd={REPO}" in run.output
    for d in ("/run", "/dev/shm", *GUEST_TMPFS_DIRS):
        assert f"tmpfs:{d}\n" in run.output
    for m in ("bridge", "8021q", "veth"):
        assert f"module:{m}\n" in run.output
    assert f"prefix={sys.prefix}\n" in run.output
    assert not os.path.exists("/etc/cni/net.d/uml-probe.conflist")


def test_run_in_uml_reports_a_guest_that_never_finished(uml_kernel: UmlKernel) -> None:
    """A guest that dies before writing its status is a harness error carrying the console output."""
    argv = ["/bin/sh", "-c", "echo about-to-die; echo o > /proc/sysrq-trigger; sleep 30"]
    with pytest.raises(UmlError, match="never reported an exit status") as info:
        run_in_uml(argv, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert "about-to-die" in info.value.output


def test_run_in_uml_timeout_kills_the_kernel(uml_kernel: UmlKernel) -> None:
    start = time.monotonic()
    with pytest.raises(UmlError, match="timed out") as info:
        run_in_uml(["/bin/sh", "-c", "echo started; sleep 600"], cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=6)
    assert time.monotonic() - start < 20
    assert "started" in info.value.output
