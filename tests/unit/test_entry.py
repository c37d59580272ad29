"""How a `loxi-cni` process ends: `loxi.plugin.exit.exit_now`, in fresh interpreters started as the launcher does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = "import sys; sys.path.insert(0, sys.argv[1]); from loxi.plugin.exit import exit_now\n"


def child_argv(body: str) -> list[str]:
    """A fresh isolated interpreter, as the launcher starts one, running `body` after importing exit_now."""
    return [sys.executable, "-I", "-S", "-c", PRELUDE + body, str(ROOT)]


def run_child(body: str) -> subprocess.CompletedProcess:
    return subprocess.run(child_argv(body), capture_output=True, timeout=60)


def test_buffered_output_is_flushed_and_the_status_kept():
    body = "sys.stdout.write('x' * 100000); sys.stdout.buffer.write(b'y'); sys.stderr.write('note'); exit_now(3)"
    proc = run_child(body)
    assert proc.returncode == 3
    assert proc.stdout == b"x" * 100000 + b"y"
    assert proc.stderr == b"note"


def test_the_interpreters_teardown_is_skipped():
    """No atexit handler, no finalizer: the process ends at exit_now."""
    body = (
        "import atexit; atexit.register(lambda: sys.stdout.write('atexit ran'))\n"
        "class Late:\n    def __del__(self): sys.stdout.write('finalizer ran')\n"
        "keep = Late(); sys.stdout.write('done'); exit_now(0)"
    )
    proc = run_child(body)
    assert (proc.returncode, proc.stdout) == (0, b"done")


def test_a_closed_stdout_makes_the_status_1_without_a_traceback():
    """The runtime hung up before reading the answer: it did not get it, whatever the call did."""
    body = "import time; time.sleep(0.3); sys.stdout.write('{}'); exit_now(0)"
    proc = subprocess.Popen(child_argv(body), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child writes: its flush meets EPIPE
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
