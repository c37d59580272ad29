"""Open only regular files, never block on one, and never replace anything else.

A path loxi-cni or loxi-plan is handed (a log file, a lock, resolvConf, a conf
file, an install target) may name a FIFO, a device or a socket, by mistake or
on purpose. Opening a FIFO blocks until a peer appears, which for a plugin means
a pod left half-made when the runtime gives up; opening a device can have side
effects; renaming over `/dev/null` replaces the machine's /dev/null with a
regular file. So every open here is stat()ed first (nothing that is not a
regular file is opened at all), then opened with O_NONBLOCK and O_NOCTTY and
checked again on the descriptor (the path may have changed in between), and
every writer checks its target before it renames over it.

The errors are OSError subclasses whose `strerror` says what the file is, so
callers that already turn an OSError into their own one-line error (a CNI error
object, loxi-plan's message) need no new branch. Stdlib only (os, stat, errno):
the plugin's hot paths import it.
"""

from __future__ import annotations

import errno
import os
import stat

# What a conf file, a resolv.conf or a template may weigh: far above any real one,
# far below what would hurt a process that reads it whole.
MAX_CONF_BYTES = 4 * 1024 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
)


class NotRegularFile(OSError):
    """`path` exists and is not a regular file: refused, not opened."""

    def __init__(self, path: str, kind: str, action: str = "open") -> None:
        super().__init__(errno.EINVAL, f"{path} is {kind}, not a regular file: refusing to {action} it", path)


class FileTooLarge(OSError):
    def __init__(self, path: str, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{path} is larger than {limit} bytes: refusing to read it", path)


def kind_of(mode: int) -> str:
    """'a FIFO', 'a character device', …, for a mode that is not a regular file's."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str, flags: int = os.O_RDONLY, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
    """os.open(path, flags), refusing anything but a regular file, without ever blocking.

    A missing file is created when `flags` has O_CREAT (then it is regular);
    O_NOFOLLOW in `flags` is honoured (a symlink is then ELOOP, as os.open says).
    """
    follow = not flags & os.O_NOFOLLOW
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISLNK(info.st_mode):  # O_NOFOLLOW: say it the way os.open would
                raise OSError(errno.ELOOP, f"{path} is a symbolic link: refusing to follow it", path)
            raise NotRegularFile(path, kind_of(info.st_mode))
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        got = os.fstat(fd).st_mode
        if not stat.S_ISREG(got):  # swapped between the stat and the open
            raise NotRegularFile(path, kind_of(got))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, limit: int = MAX_CONF_BYTES) -> bytes:
    """The whole content of a regular file of at most `limit` bytes."""
    fd = open_regular(path)
    try:
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge(path, limit)
    return b"".join(chunks)


def read_stream(stream, limit: int = MAX_CONF_BYTES, name: str = "stdin") -> bytes:
    """At most `limit` bytes of a binary stream (stdin), or FileTooLarge."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(name, limit)
    return data


def check_replaceable(path: str) -> None:
    """A writer may rename over `path` only if nothing is there or a regular file is.

    A symlink is refused too, not written through: renaming over it would
    replace the link, and following it would write wherever it points.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(path, kind_of(info.st_mode), "replace")
