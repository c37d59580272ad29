"""File locks (flock) that serialise what must be serialised, and nothing more.

Lock order, outermost first, never the other way round:
  1. the attachment lock (network, container id, ifname): the whole command;
  2. an IPAM range set's `lock` file in the store (host-local's own, taken
     inside the allocator for one range set at a time, shared with the
     reference plugin);
  3. the bridge lock: creating the bridge, its gateway address and VLAN
     filtering, enslaving a port, and undoing any of these.
No lock is held across a call to a delegated IPAM plugin except the first.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from compiler.model import attachment_digest
from intent.errors import IO_FAILURE, CniError
from intent.safe_io import open_regular

DEFAULT_LOCK_DIR = "/run/loxi/locks"


def lock_dir() -> str:
    return os.environ.get("LOXI_LOCK_DIR") or DEFAULT_LOCK_DIR


def _open_lock(directory: str, path: str) -> int:
    """The lock file, made if need be; a CniError (code 5) naming what is wrong.

    A lock directory that cannot be made (a file in its way, a read-only
    mount) or a lock path that is a FIFO, a device or a symlink is refused here,
    before the command changes anything.
    """
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot create the lock directory {directory}: {exc.strerror or exc}") from None
    try:
        return open_regular(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot open the lock {path}: {exc.strerror or exc}") from None


# Set by `best_effort()` for every lock its block takes (DEL's attachment lock and the bridge lock).
_BEST_EFFORT: contextvars.ContextVar[bool] = contextvars.ContextVar("loxi_locks_best_effort", default=False)


@contextmanager
def best_effort() -> Iterator[None]:
    """Inside the block, a lock that cannot be had at all is gone without (see `exclusive`)."""
    token = _BEST_EFFORT.set(True)
    try:
        yield
    finally:
        _BEST_EFFORT.reset(token)


@contextmanager
def exclusive(name: str, remove: bool = False, best_effort: bool | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `<lock dir>/<name>.lock` for the block.

    `remove` unlinks the file on the way out (DEL: the attachment is gone, and a
    node must not collect one file per pod it ever ran). That is safe because
    every taker, after its flock succeeds, checks that the path still names the
    file it locked, and starts over if a remover got there first.

    `best_effort` (DEL, or inside `best_effort()`) runs the block unlocked when the lock cannot be had at
    all, saying why on stderr: no ADD can hold a lock that cannot be created,
    and a DEL that fails for ever would keep the runtime from ever removing the pod.
    """
    directory = lock_dir()
    path = os.path.join(directory, f"{name}.lock")
    if best_effort is None:
        best_effort = _BEST_EFFORT.get()
    while True:
        try:
            fd = _open_lock(directory, path)
        except CniError as exc:
            if not best_effort:
                raise
            sys.stderr.write(f"loxi-cni: going on without the lock: {exc.msg}\n")
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)  # closing releases the flock


@contextmanager
def try_exclusive(name: str, remove: bool = False) -> Iterator[bool]:
    """Like `exclusive`, but never waits: the block gets False when someone holds the lock.

    For loxi-agent's reconciler, which must never act on an attachment whose ADD
    or DEL is running, and must not queue behind one either (the ADD would then
    find its fresh allocation gone)."""
    directory = lock_dir()
    path = os.path.join(directory, f"{name}.lock")
    fd = _open_lock(directory, path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    try:
        yield same  # a remover got there first: treat as busy, the next pass looks again
    finally:
        if remove and same:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)


def bridge_lock_name(bridge: str) -> str:
    return f"bridge-{bridge}"


def attachment_lock_name(network: str, container_id: str, ifname: str) -> str:
    return f"attach-{attachment_digest(network, container_id, ifname)[:32]}"
