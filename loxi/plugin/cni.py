"""`loxi-cni`: the executable the container runtime runs for every pod.

Only the standard library is imported until the command needs more: VERSION
and every error found in the environment answer without touching pyroute2,
networkx or jsonschema. Whatever happens, stdout carries exactly one JSON
document (a result or a CNI error) or nothing, and no traceback escapes.
"""

from __future__ import annotations

import os
import sys

from intent.errors import INTERNAL_ERROR, IO_FAILURE, CniError
from intent.versions import SUPPORTED_VERSIONS, version_info_json
from loxi.plugin.cnilog import logged, note_plan

# typing costs VERSION ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, TextIO

PLUGIN_ABOUT = "CNI loxi-cni plugin v0.1.0"


# intent.config.MAX_STDIN, which refuses more; reading one byte past it is enough to know.
MAX_STDIN = 4 * 1024 * 1024


def _read_stdin(stream: BinaryIO) -> bytes:
    try:
        return stream.read(MAX_STDIN + 1)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"error reading from stdin: {exc}") from None


@logged
def run(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One CNI call, in-process. Returns the exit status."""
    try:
        command = environ.get("CNI_COMMAND")
        if not command:
            print(f"{PLUGIN_ABOUT}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}", file=stderr)
            return 0
        if command == "VERSION":  # needs nothing else: answer before importing anything more
            stdout.write(version_info_json() + "\n")
            return 0
        from intent.env import read_request

        request = read_request(environ)
        data = _read_stdin(stdin)
        return _dispatch(request, data, stdout)
    except CniError as err:
        stdout.write(err.to_json())
        return 1
    except Exception as exc:  # a bug: still one CNI error document, never a traceback
        import traceback

        traceback.print_exc(file=stderr)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        err = CniError(
            INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}", f"{where.filename}:{where.lineno}"
        )
        stdout.write(err.to_json())
        return 1


def _dispatch(request, data: bytes, stdout: TextIO) -> int:
    from intent.config import decode, load_netconf
    from intent.versions import require_command_allowed, require_supported

    doc = decode(data)
    version = require_supported(doc.get("cniVersion") or "")
    require_command_allowed(request.command, version)
    conf = load_netconf(data, request, doc, version)  # the version checked once, here

    # Only the command's own module: a cold DEL never imports what ADD needs.
    if request.command == "ADD":
        from intent.result import format_result, require_convertible
        from loxi.engine.add import cmd_add

        require_convertible(conf.cni_version, conf.has_ipam)
        outcome = cmd_add(conf, request)
        note_plan(outcome.plan)
        stdout.write(format_result(outcome.result, conf.cni_version))
    elif request.command == "DEL":
        if not request.unattachable:  # an id or ifname that is not UTF-8: nothing was ever made under it
            from loxi.engine.delete import cmd_del

            note_plan(cmd_del(conf, request))
    elif request.command == "CHECK":
        from intent.result import check_prev_result
        from loxi.engine.check import cmd_check

        check_prev_result(doc.get("prevResult"))  # code 7 for one CHECK cannot rely on (loxi-plan check needs none)
        note_plan(cmd_check(conf, request))
    elif request.command == "STATUS":
        from loxi.engine.status import cmd_status

        cmd_status(conf, request)
    elif request.command == "GC":
        from loxi.engine.gc import cmd_gc

        cmd_gc(conf, request)
    return 0


def main_in_process(data: bytes | None = None) -> None:
    """Run the call in this process and exit; `data` is stdin when the caller has read it."""
    from io import BytesIO

    stdin: BinaryIO = BytesIO(data) if data is not None else sys.stdin.buffer
    from loxi.plugin.exit import exit_now

    exit_now(run(os.environ, stdin, sys.stdout, sys.stderr))
