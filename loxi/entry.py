"""`loxi-cni`'s process entry point: the launcher and the console script call `main`.

The runtime starts a process per CNI call, so what this module imports is paid
on every pod. On the agent's path that is interpreter built-ins only (`posix`,
`_socket`): read stdin, hand the call to loxi-agent, relay its stdout and exit
status. Only when the agent does not answer (or for VERSION, which needs no
agent) is the in-process entry point `loxi.cni` imported.
"""

import posix
import sys

MAX_STDIN = 4 * 1024 * 1024  # intent.config.MAX_STDIN (not imported here: built-ins only)


def main() -> None:
    """Hand the call to loxi-agent when one answers; otherwise run it here."""
    command = posix.environ.get(b"CNI_COMMAND")
    data = None
    if command and command != b"VERSION":
        try:
            data = sys.stdin.buffer.read(MAX_STDIN + 1)  # more is refused (code 6) anyway
        except OSError:
            data = None  # loxi.cni reads stdin again and reports the error
        if data is not None:
            from loxi.client import call_agent

            reply = call_agent(posix.environ, data)
            if reply is not None:
                sys.stdout.buffer.write(reply[1])
                exit_now(reply[0])
    from loxi.cni import main_in_process

    main_in_process(data)


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


if __name__ == "__main__":
    main()
