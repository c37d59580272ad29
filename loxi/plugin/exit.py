"""End a loxi-cni process the way every exit of it must: flushed, status kept, no teardown.

Both the thin client (`loxi.plugin.entry`) and the in-process plugin
(`loxi.plugin.cni`) end through here, so neither imports the other to exit.
Interpreter built-ins only: it is on the agent's path.
"""

import posix
import sys


def exit_now(status: int) -> None:
    """Flush stdout and stderr, then end the process without the interpreter's teardown.

    Teardown (a last garbage collection, then freeing every module, type and
    code object) is CPU on every pod for nothing: ~2 ms of the thin client's
    ~12, more after an in-process call has loaded the engine. loxi-cni needs
    none of it: the files it writes are closed (and fsynced) where they are
    written, its locks are released by the kernel with the process, and it
    registers no atexit handler. If stdout cannot take the output (the runtime
    closed the pipe), the status is 1: the runtime did not get its answer.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout:
                status = 1
    posix._exit(status)
