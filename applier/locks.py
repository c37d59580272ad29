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
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_LOCK_DIR = "/run/loxi/locks"


def lock_dir() -> str:
    return os.environ.get("LOXI_LOCK_DIR") or DEFAULT_LOCK_DIR


@contextmanager
def exclusive(name: str, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on `<lock dir>/<name>.lock` for the block.

    `remove` unlinks the file on the way out (DEL: the attachment is gone, and a
    node must not collect one file per pod it ever ran). That is safe because
    every taker, after its flock succeeds, checks that the path still names the
    file it locked, and starts over if a remover got there first.
    """
    directory = lock_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
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


def bridge_lock_name(bridge: str) -> str:
    return f"bridge-{bridge}"


def attachment_lock_name(network: str, container_id: str, ifname: str) -> str:
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:32]
    return f"attach-{digest}"
