"""Lease stores as loxi-agent sees them: indexed once, then kept current by the kernel's inotify.

Every host-local question an ADD, CHECK or DEL asks (does this attachment hold an address? is this
one taken?) is about the whole store: answered from the directory, it costs a listing and a read
(or a stat) of every lease file, about 1.7 ms a call with 200 pods here, so a node's ADD grew with
its pods. The kernel can say instead what changed: an inotify watch on the store directory queues
an event naming every file created, written, renamed or removed there, by any process (the
reference host-local binary, another call's in-process fallback), before that process's syscall
returns. `snapshot` drains the queue while the caller holds the store's flock, so every change a
writer made before it let the lock go is seen; the names the events carry are read again; a queue
that overflowed, or a watch the kernel dropped (the directory removed, its filesystem unmounted),
means a full scan. Nothing is believed that the kernel did not report, so nothing goes stale; a
store that cannot be watched (no inotify, no /proc, the watch limit reached) is scanned as before,
and a cold process (the in-process plugin) never watches at all.

Not pyroute2's `inotify` module: it opens a blocking, inheritable descriptor, registers paths
(following symlinks) and has no overflow handling. The store must be node-local, as host-local's
flock already requires: inotify does not see another host's writes to a network filesystem.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from applier.ipam import store
from applier.ipam.store import TMP_PREFIX, Key, _Dir, _key_from_name, _Snapshot

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
# Everything that can change which files the directory holds or what one of them says.
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)
_LOST = IN_DELETE_SELF | IN_UNMOUNT | IN_IGNORED
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
MAX_STORES = 64  # watched at once; the least recently used beyond that is dropped (and scanned if used)
READ_SIZE = 1 << 16


@dataclass
class _Index:
    """What one watched store directory holds, as of the last drained event."""

    wd: int
    leases: dict[Key, str] = field(default_factory=dict)  # key -> file name
    owners: dict[Key, str | None] = field(default_factory=dict)  # stripped content; None: not a regular file
    by_owner: dict[str, tuple[Key, ...]] = field(default_factory=dict)
    temps: set[str] = field(default_factory=set)
    dirty: set[bytes] = field(default_factory=set)  # names events reported since they were last read
    lost: bool = False

    def forget(self, key: Key) -> None:
        self.leases.pop(key, None)
        owner = self.owners.pop(key, None)
        if owner is not None:
            keys = tuple(k for k in self.by_owner.get(owner, ()) if k != key)
            if keys:
                self.by_owner[owner] = keys
            else:
                self.by_owner.pop(owner, None)

    def learn(self, key: Key, name: str, owner: str | None) -> None:
        self.forget(key)
        self.leases[key] = name
        self.owners[key] = owner
        if owner is not None:
            self.by_owner[owner] = (*self.by_owner.get(owner, ()), key)

    def refresh(self, directory: _Dir, name: str) -> None:
        """Read `name` again: it is a lease (with this content, or not a regular file), a temp file, or gone."""
        if name.startswith(TMP_PREFIX):
            if _exists(directory, name):
                self.temps.add(name)
            else:
                self.temps.discard(name)
            return
        key = _key_from_name(name)
        if key is None:
            return  # the lock, last_reserved_ip.N, anything else: not a lease
        present, text = _read_lease(directory, name)
        if present:
            self.learn(key, name, None if text is None else text.strip())
        else:
            self.forget(key)

    def snapshot(self, directory: _Dir) -> _Snapshot:
        # Copies: another thread may refresh the index while this call still reads its snapshot.
        return _Snapshot(directory, dict(self.leases), list(self.temps), dict(self.owners), dict(self.by_owner))


def _exists(directory: _Dir, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _read_lease(directory: _Dir, name: str) -> tuple[bool, str | None]:
    """(the name exists, its content if it is a regular file): a symlink or FIFO still takes its address."""
    text = directory.read(name)
    if text is not None:
        return True, text
    return _exists(directory, name), None


class StoreWatcher:
    """One inotify descriptor for the process, a watch and an `_Index` per store directory in use."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self._mutex = threading.Lock()
        self._by_inode: OrderedDict[tuple[int, int], _Index] = OrderedDict()
        self._by_wd: dict[int, _Index] = {}
        self.scans = 0  # full scans made: a test's and an operator's way to see the index is used

    def snapshot(self, directory: _Dir) -> _Snapshot | None:
        """The store behind `directory`, from its index; None when it cannot be watched (scan it)."""
        st = os.fstat(directory.fd)
        inode = (st.st_dev, st.st_ino)
        with self._mutex:
            self._drain()
            index = self._by_inode.get(inode)
            if index is None or index.lost:
                index = self._watch(directory, inode)
                if index is None:
                    return None
            else:
                self._by_inode.move_to_end(inode)
                for name in index.dirty:
                    index.refresh(directory, os.fsdecode(name))
                index.dirty.clear()
            return index.snapshot(directory)

    def _watch(self, directory: _Dir, inode: tuple[int, int]) -> _Index | None:
        """Watch first, then scan: a change made during the scan is an event the next call reads again.
        Through /proc/self/fd, the watch is on the directory this call opened, never a path's new target."""
        path = f"/proc/self/fd/{directory.fd}".encode()
        wd = self._libc.inotify_add_watch(self.fd, path, WATCH_MASK)
        if wd < 0:
            return None
        index = _Index(wd)
        for name in directory.names():
            index.refresh(directory, name)
        self.scans += 1
        old = self._by_inode.pop(inode, None)
        if old is not None:
            self._by_wd.pop(old.wd, None)
        self._by_inode[inode] = index
        self._by_wd[wd] = index  # the kernel gives an inode already watched the same wd back
        while len(self._by_inode) > MAX_STORES:
            _, dropped = self._by_inode.popitem(last=False)
            self._by_wd.pop(dropped.wd, None)
            self._libc.inotify_rm_watch(self.fd, dropped.wd)
        return index

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            self._apply(data)

    def _apply(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:  # events were lost: every index is rebuilt when next used
                for index in self._by_wd.values():
                    index.lost = True
                continue
            index = self._by_wd.get(wd)
            if index is None:
                continue
            if mask & _LOST:
                index.lost = True
                if mask & IN_IGNORED:
                    self._by_wd.pop(wd, None)
            elif name:
                index.dirty.add(name)

    def close(self) -> None:
        os.close(self.fd)


_watcher: StoreWatcher | None = None


def _forget_in_child() -> None:
    """A forked child shares the parent's inotify queue: a drain there would take the parent's events."""
    global _watcher
    if _watcher is not None:
        store.set_store_index(None)
        _watcher = None  # the descriptor is the parent's; the child only stops using it


os.register_at_fork(after_in_child=_forget_in_child)


def watch_stores(on: bool = True) -> StoreWatcher | None:
    """Serve every store snapshot of this process from a watcher's index (loxi-agent, at start).
    Without inotify the process goes on scanning; `on=False` stops watching."""
    global _watcher
    if _watcher is not None:
        store.set_store_index(None)
        _watcher.close()
        _watcher = None
    if on:
        try:
            _watcher = StoreWatcher()
        except (OSError, AttributeError):  # no inotify in this kernel or libc
            return None
        store.set_store_index(_watcher.snapshot)
    return _watcher
