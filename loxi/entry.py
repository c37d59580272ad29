"""`loxi-cni`'s process entry point: the launcher and the console script call `main`.

The runtime starts a process per CNI call, so what this module imports is paid
on every pod. On the agent's path that is interpreter built-ins only (`posix`,
`_socket`): read stdin, hand the call to loxi-agent, relay its stdout and exit
status. Only when the agent does not answer (or for VERSION, which needs no
agent) is the in-process entry point `loxi.cni` imported.
"""

import posix
import sys


def main() -> None:
    """Hand the call to loxi-agent when one answers; otherwise run it here."""
    command = posix.environ.get(b"CNI_COMMAND")
    data = None
    if command and command != b"VERSION":
        try:
            data = sys.stdin.buffer.read()
        except OSError:
            data = None  # loxi.cni reads stdin again and reports the error
        if data is not None:
            from loxi.client import call_agent

            reply = call_agent(posix.environ, data)
            if reply is not None:
                sys.stdout.buffer.write(reply[1])
                sys.stdout.buffer.flush()
                sys.exit(reply[0])
    from loxi.cni import main_in_process

    main_in_process(data)


if __name__ == "__main__":
    main()
