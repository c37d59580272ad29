"""Replace a file so that a reader sees the old content or the new, never a part.

Runtimes read /etc/cni/net.d and exec /opt/cni/bin at any moment; conflists and
the launcher are therefore written to a temp file in the same directory,
fsynced, optionally checked, renamed over the target, and the directory fsynced.
Nothing but a regular file is ever renamed over.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable

from intent.safe_io import check_replaceable


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes | str, mode: int, verify: Callable[[str], None] | None = None) -> None:
    """Write `data` to `path` atomically with `mode`; `verify(temp path)` may refuse it by raising.

    Only a regular file (or nothing) at `path` is replaced: a symlink, a device,
    a FIFO or a socket there raises intent.safe_io.NotRegularFile (an OSError)
    and nothing is written. The rename would put a regular file in its place
    (`-o /dev/null` once turned the machine's /dev/null into one); a symlink is
    refused rather than written through, so a writer never lands outside the
    path it was given.
    """
    target = os.path.abspath(path)
    check_replaceable(target)
    directory = os.path.dirname(target)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
