"""`loxi-cni`'s process entry point: the launcher and the console script call `main`.

The runtime starts a process per CNI call, so what this module imports is paid
on every pod. On the agent's path that is interpreter built-ins only (`posix`,
`_socket`): read stdin, hand the call to loxi-agent, relay its stdout and exit
status. Only when the agent does not answer (or for VERSION, which needs no
agent) is the in-process entry point `loxi.plugin.cni` imported.
"""

import posix
import sys

from loxi.plugin.exit import exit_now

MAX_STDIN = 4 * 1024 * 1024  # intent.config.MAX_STDIN (not imported here: built-ins only)


def main() -> None:
    """Hand the call to loxi-agent when one answers; otherwise run it here."""
    command = posix.environ.get(b"CNI_COMMAND")
    data = None
    if command and command != b"VERSION":
        try:
            data = sys.stdin.buffer.read(MAX_STDIN + 1)  # more is refused (code 6) anyway
        except OSError:
            data = None  # loxi.plugin.cni reads stdin again and reports the error
        if data is not None:
            from loxi.plugin.client import call_agent

            reply = call_agent(posix.environ, data)
            if reply is not None:
                sys.stdout.buffer.write(reply[1])
                exit_now(reply[0])
    from loxi.plugin.cni import main_in_process

    main_in_process(data)


if __name__ == "__main__":
    main()
