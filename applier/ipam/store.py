"""The host-local store on disk: one network's lease directory, in the reference plugin's format.

The store stays byte-compatible with upstream host-local (`<ip>` files holding `cid\\r\\nifname`,
`last_reserved_ip.N`, an flock'd `lock`), so a node can switch between this and the reference
binary, in either direction, without losing leases. Where we differ it is on purpose:

* a reservation is written to a temp file, fsync'd and then hard-linked into
  place, so a crash never leaves an empty or half-written lease file, and the
  link's EEXIST keeps the reference's O_EXCL semantics;
* everything is opened relative to the store directory with O_NOFOLLOW, so a
  planted symlink cannot redirect a read, write or unlink outside it;
* new directories are 0700 rather than 0755.

Which address to take is `applier.ipam.allocator`'s. Stdlib only: this runs on every ADD and DEL.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv6Address, ip_address

from intent.errors import IO_FAILURE, CniError
from intent.ipam_config import HostLocalConfig, RangeSet
from intent.iptypes import IPAddress
from intent.safe_io import open_regular

LINE_BREAK = "\r\n"
LOCK_NAME = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."
# A leading dot can never start an IP address, so neither plugin mistakes a temp file for a lease.
TMP_PREFIX = ".loxi-tmp."
# Temp files are only written under the lock; one this old belongs to a writer that died.
STALE_TMP_SECONDS = 60.0
DIR_MODE = 0o700
FILE_MODE = 0o600
# Lease files hold a container id (<= 1024 bytes, see intent.env) and an ifname.
MAX_LEASE_BYTES = 4096

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def ip_from_name(name: str) -> IPAddress | None:
    """Only canonical IP text names a lease; `lock`, `last_reserved_ip.N` and temp files never parse."""
    if not name or "%" in name or not (name[0].isdigit() or name[0] in "abcdefABCDEF:"):
        return None
    try:
        ip = ip_address(name)
    except ValueError:
        return None
    return ip if str(ip) == name else None


# Directory scans parse every name: (family, int) keys and a dict lookup per IPv4 octet
# keep that an order of magnitude cheaper than building ipaddress objects.
Key = tuple[int, int]
_OCTETS = {str(i): i for i in range(256)}


@functools.lru_cache(maxsize=1 << 14)  # a store's names come back in every scan (loxi-agent)
def _key_from_name(name: str) -> Key | None:
    parts = name.split(".")
    if len(parts) == 4 and ":" not in name:
        try:
            a, b, c, d = (_OCTETS[part] for part in parts)
        except KeyError:
            return None
        return 4, (a << 24) | (b << 16) | (c << 8) | d
    ip = ip_from_name(name)
    return None if ip is None else _ip_key(ip)


def _ip_key(ip: IPAddress) -> Key:
    return ip.version, int(ip)


def _key_ip(key: Key) -> IPAddress:
    return IPv4Address(key[1]) if key[0] == 4 else IPv6Address(key[1])


def _owner_text(container_id: str, ifname: str) -> str:
    # The reference trims the id before writing and compares trimmed content.
    return container_id.strip() + LINE_BREAK + ifname


def _io_error(action: str, err: OSError) -> CniError:
    return CniError(IO_FAILURE, f"host-local store: {action}: {err.strerror or err}")


# How a long-lived process (loxi-agent) answers `_Snapshot.of` from what it already knows: set by
# `applier.ipam.watch.watch_stores`; it returns None for a store it cannot watch, which is then scanned.
StoreIndex = Callable[["_Dir"], "_Snapshot | None"]
_store_index: StoreIndex | None = None


def set_store_index(index: StoreIndex | None) -> None:
    global _store_index
    _store_index = index


class _Dir:
    """An open store directory: every name below is resolved relative to it, never via a path."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def names(self) -> list[str]:
        with os.scandir(self.fd) as entries:
            return [entry.name for entry in entries]

    def read(self, name: str, limit: int = MAX_LEASE_BYTES) -> str | None:
        """The content of a regular file, or None for anything else (symlink, fifo, gone)."""
        found = self._read(name, limit)
        return None if found is None else found[1]

    def _read(self, name: str, limit: int) -> tuple[os.stat_result, str] | None:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return st, os.read(fd, limit).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def write_tmp(self, content: str, sync: bool) -> str:
        name = f"{TMP_PREFIX}{os.getpid()}.{os.urandom(6).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, FILE_MODE, dir_fd=self.fd)
        try:
            os.write(fd, content.encode())
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.unlink(name)
            raise
        os.close(fd)
        return name

    def link(self, src: str, dst: str) -> bool:
        """Atomic create-if-absent of `dst` with `src`'s content: False if `dst` exists."""
        try:
            os.link(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
        except FileExistsError:
            return False
        return True

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> bool:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def sync(self) -> None:
        os.fsync(self.fd)

    def remove_stale_tmp(self, names: list[str]) -> None:
        now = time.time()
        for name in names:
            if not name.startswith(TMP_PREFIX):
                continue
            try:
                if now - os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime > STALE_TMP_SECONDS:
                    os.unlink(name, dir_fd=self.fd)
            except OSError:
                pass


class _Snapshot:
    """The lease files of one store: from a directory listing, contents read lazily and at most once
    (a cold process), or from a watcher's index, everything already known (loxi-agent)."""

    def __init__(
        self,
        directory: _Dir | None,
        leases: dict[Key, str],
        temps: list[str],
        contents: dict[Key, str | None] | None = None,
        by_owner: Mapping[str, tuple[Key, ...]] | None = None,
    ) -> None:
        self.dir = directory
        self.leases = leases  # key -> file name
        self.temps = temps  # names of temp files (a writer's, or a dead writer's)
        self._content: dict[Key, str | None] = {} if contents is None else contents
        self.by_owner = by_owner  # stripped content -> keys, when complete

    @classmethod
    def of(cls, directory: _Dir | None) -> _Snapshot:
        """The store as it is now; through the watcher's index when this process keeps one."""
        if directory is None:
            return cls(None, {}, [])
        if _store_index is not None:
            indexed = _store_index(directory)
            if indexed is not None:
                return indexed
        return cls.scan(directory)

    @classmethod
    def scan(cls, directory: _Dir) -> _Snapshot:
        leases: dict[Key, str] = {}
        temps = []
        for name in directory.names():
            key = _key_from_name(name)
            if key is not None:
                leases[key] = name
            elif name.startswith(TMP_PREFIX):
                temps.append(name)
        return cls(directory, leases, temps)

    def is_taken(self, key: Key) -> bool:
        return key in self.leases

    def taken(self, family: int) -> set[int]:
        return {value for version, value in self.leases if version == family}

    def name(self, ip: IPAddress) -> str:
        return self.leases[_ip_key(ip)]

    def owner(self, key: Key) -> str | None:
        if key not in self._content:
            text = self.dir.read(self.leases[key]) if self.dir else None
            self._content[key] = None if text is None else text.strip()
        return self._content[key]

    def held(self, owner: str, rset: RangeSet | None = None) -> list[IPAddress]:
        """Addresses whose file holds exactly `owner`; only files inside `rset` are read when given."""
        keys: list[Key] = sorted(self.leases if self.by_owner is None else self.by_owner.get(owner, ()))
        if rset is not None:
            bounds = [(int(r.range_start), int(r.range_end)) for r in rset.ranges]
            keys = [k for k in keys if k[0] == rset.family and any(lo <= k[1] <= hi for lo, hi in bounds)]
        return [_key_ip(k) for k in keys if self.owner(k) == owner]

    def of_attachment(self, container_id: str, ifname: str) -> list[IPAddress]:
        """The reference DEL's match: `cid\\r\\nifname` files, or if there are none, legacy files holding just `cid`."""
        return self.held(_owner_text(container_id, ifname)) or self.held(container_id.strip())


class LeaseStore:
    """One network's lease directory `<dataDir>/<name>/`, shared with the reference host-local binary."""

    def __init__(self, config: HostLocalConfig) -> None:
        self.config = config
        self.path = config.store_dir

    def release(self, container_id: str, ifname: str) -> None:
        """Reference DEL: drop the files `_Snapshot.of_attachment` names."""
        with self._locked() as directory:
            if directory is None:
                return
            snap = _Snapshot.of(directory)
            errors = []
            for ip in snap.of_attachment(container_id, ifname):
                try:
                    directory.unlink(snap.name(ip))
                except OSError as err:
                    errors.append(f"{ip}: {err.strerror}")
            if errors:
                raise CniError(IO_FAILURE, "host-local store: failed to release", "; ".join(errors))

    def release_ips(self, container_id: str, ifname: str, ips: list[IPAddress]) -> None:
        """A failed ADD's rollback: exactly these files, while they name this attachment (not those it found)."""
        owner = _owner_text(container_id, ifname)
        with self._locked() as directory:
            for ip in ips if directory else ():
                if (directory.read(str(ip)) or "").strip() == owner:
                    directory.unlink(str(ip))

    @contextmanager
    def _locked(self) -> Iterator[_Dir | None]:
        """The existing store under its exclusive lock (the lock file made if missing); None: no store."""
        with self._open(create=False) as directory:
            if directory is None:
                yield None
                return
            with self._lock_file(directory, create=True) as lock_fd, _flock(lock_fd, fcntl.LOCK_EX):
                yield directory

    @contextmanager
    def _open(self, create: bool) -> Iterator[_Dir | None]:
        if create:
            try:
                os.makedirs(self.config.data_dir, mode=DIR_MODE, exist_ok=True)
            except OSError as err:
                raise _io_error(f"cannot create {self.config.data_dir}", err) from None
            try:
                os.mkdir(self.path, DIR_MODE)
            except FileExistsError:
                pass  # an existing store is accepted with whatever mode it has
            except OSError as err:
                raise _io_error(f"cannot create {self.path}", err) from None
        try:
            fd = os.open(self.path, _DIR_FLAGS)
        except FileNotFoundError:
            if create:
                raise CniError(IO_FAILURE, f"host-local store: {self.path} vanished") from None
            yield None
            return
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                msg = f"host-local store: {self.path} is a symlink or not a directory"
                raise CniError(IO_FAILURE, msg) from None
            raise _io_error(f"cannot open {self.path}", err) from None
        try:
            yield _Dir(fd)
        except OSError as err:
            raise _io_error(f"in {self.path}", err) from None
        finally:
            os.close(fd)

    @contextmanager
    def _lock_file(self, directory: _Dir | None, create: bool) -> Iterator[int | None]:
        """The reference's lock: flock on `<store>/lock`. Without `create`, a missing lock file means no lock."""
        fd = None
        if directory is not None:
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
            try:  # a FIFO there would block the open for ever, a device is not ours: both refused
                fd = open_regular(LOCK_NAME, flags, FILE_MODE, dir_fd=directory.fd)
            except FileNotFoundError:
                if create:
                    raise
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _read_snapshot(self, contents: bool = True) -> _Snapshot:
        """A consistent read-only view, under a shared lock when the lock file exists."""
        with (
            self._open(create=False) as directory,
            self._lock_file(directory, create=False) as lock_fd,
            _flock(lock_fd, fcntl.LOCK_SH),
        ):
            snap = _Snapshot.of(directory)
            if contents and snap.by_owner is None:
                for key in snap.leases:
                    snap.owner(key)
            snap.dir = None  # the fd closes on exit; nothing may read through it later
            return snap


class _Reserver:
    """Creates lease files for one set: one fsync'd temp file, hard-linked to each candidate until one sticks."""

    def __init__(self, directory: _Dir, snap: _Snapshot, owner: str, index: int) -> None:
        self.dir = directory
        self.owner = owner
        self.index = index
        self.tmp: str | None = None
        self.dir.remove_stale_tmp(snap.temps)

    def take(self, ip: IPAddress) -> bool:
        if self.tmp is None:
            self.tmp = self.dir.write_tmp(self.owner, sync=True)
        if not self.dir.link(self.tmp, str(ip)):
            return False
        last = self.dir.write_tmp(str(ip), sync=False)
        try:
            self.dir.replace(last, f"{LAST_RESERVED_PREFIX}{self.index}")
        except BaseException:
            self.dir.unlink(last)
            raise
        # Make the new entry durable before anyone is told about the address.
        self.dir.sync()
        return True

    def close(self) -> None:
        if self.tmp is not None:
            self.dir.unlink(self.tmp)
            self.tmp = None


@contextmanager
def _flock(fd: int | None, mode: int) -> Iterator[None]:
    if fd is None:
        yield
        return
    fcntl.flock(fd, mode)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
