"""The host-local allocator, in-process, on the reference plugin's on-disk format.

The store stays byte-compatible with upstream host-local (`<ip>` files holding
`cid\\r\\nifname`, `last_reserved_ip.N`, an flock'd `lock`), so a node can switch
between this and the reference binary, in either direction, without losing
leases. Where we differ it is on purpose:

* a reservation is written to a temp file, fsync'd and then hard-linked into
  place, so a crash never leaves an empty or half-written lease file, and the
  link's EEXIST keeps the reference's O_EXCL semantics;
* a retried ADD for an attachment that already holds an address gets that
  address back instead of "duplicate allocation is not allowed";
* everything is opened relative to the store directory with O_NOFOLLOW, so a
  planted symlink cannot redirect a read, write or unlink outside it;
* new directories are 0700 rather than 0755.

Stdlib only (os, fcntl, ipaddress): this runs on every ADD and DEL.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address, ip_interface

from intent.env import validate_container_id, validate_ifname
from intent.errors import GENERIC_GO_ERROR, IO_FAILURE, CniError
from intent.ipam_config import HostLocalConfig, IPAddress, RangeSet
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


@dataclass(frozen=True)
class Lease:
    """One address held by an attachment; `address` keeps the host bits with the subnet's prefix."""

    address: IPv4Interface | IPv6Interface
    gateway: IPv4Address | IPv6Address | None
    range_set_index: int

    @property
    def ip(self) -> IPAddress:
        return self.address.ip


@dataclass(frozen=True)
class Allocation:
    """One lease file as found on disk, for GC and inventory."""

    ip: IPAddress
    container_id: str
    ifname: str  # "" for a legacy file that holds only the container id
    range_set_index: int  # -1 when no configured range set holds the address any more


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


def _set_bounds(rset: RangeSet) -> tuple[int, list[tuple[int, int]]]:
    return rset.family, [(int(r.range_start), int(r.range_end)) for r in rset.ranges]


def _int_or_none(ip: IPAddress | None) -> int | None:
    return None if ip is None else int(ip)


def _owner_text(container_id: str, ifname: str) -> str:
    # The reference trims the id before writing and compares trimmed content.
    return container_id.strip() + LINE_BREAK + ifname


def _io_error(action: str, err: OSError) -> CniError:
    return CniError(IO_FAILURE, f"host-local store: {action}: {err.strerror or err}")


def _round_robin(rset: RangeSet, last: IPAddress | None) -> Iterator[tuple[int, int]]:
    """(range index, address as int) in the reference's order.

    Start after `last` when the set still holds it, else at the first rangeStart;
    wrap from a range's end to the next range's start; skip each range's gateway;
    stop on coming back to the first candidate, so `last` itself is tried last.
    """
    bounds = [(int(r.range_start), int(r.range_end), _int_or_none(r.gateway)) for r in rset.ranges]
    index, cur, first = 0, None, None
    if last is not None:
        for i, rng in enumerate(rset.ranges):
            if rng.contains(last):
                index, cur = i, int(last)
                break
    if cur is None:
        cur = first = bounds[0][0]
        if cur != bounds[0][2]:
            yield 0, cur
    while True:
        start, end, gateway = bounds[index]
        if cur == end:
            index = (index + 1) % len(bounds)
            start, end, gateway = bounds[index]
            cur = start
        else:
            cur += 1
        if first is None:
            first = cur
        elif cur == first:
            return
        if cur != gateway:
            yield index, cur


# Lease contents a long-lived process (loxi-agent, `remember_lease_contents`) has read, by the
# file's (device, inode): (ctime, mtime, size) as read, and the text.
_lease_texts: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
_remember = False
LEASE_TEXTS_MAX = 1 << 16
# A file is remembered only once it is this old (ns): the kernel's timestamps are coarse
# (a jiffy), and a file deleted and made again under a reused inode must not look the same.
SETTLED_NS = 1_000_000_000


def remember_lease_contents(on: bool = True) -> None:
    """Read each lease file once per process (loxi-agent): later scans stat it, and read it again
    only when its inode, ctime, mtime or size changed. A lease file is written once, under the
    lock, when it is made; a cold process reads every file every time, as before."""
    global _remember
    _remember = on
    _lease_texts.clear()


class _Dir:
    """An open store directory: every name below is resolved relative to it, never via a path."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def names(self) -> list[str]:
        with os.scandir(self.fd) as entries:
            return [entry.name for entry in entries]

    def read(self, name: str, limit: int = MAX_LEASE_BYTES) -> str | None:
        """The content of a regular file, or None for anything else (symlink, fifo, gone)."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, limit).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_lease(self, name: str) -> str | None:
        """`read(name)`, from what this process remembers of the file when it has not changed since."""
        if not _remember:
            return self.read(name)
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        known = _lease_texts.get((st.st_dev, st.st_ino))
        if known is not None and known[0] == (st.st_ctime_ns, st.st_mtime_ns, st.st_size):
            return known[1]
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            text = os.read(fd, MAX_LEASE_BYTES).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)
        if st.st_ctime_ns < time.time_ns() - SETTLED_NS and st.st_size <= MAX_LEASE_BYTES:
            if len(_lease_texts) >= LEASE_TEXTS_MAX:
                _lease_texts.clear()
            _lease_texts[(st.st_dev, st.st_ino)] = ((st.st_ctime_ns, st.st_mtime_ns, st.st_size), text)
        return text

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
    """The lease files of one directory listing, with contents read lazily and at most once."""

    def __init__(self, directory: _Dir | None) -> None:
        self.dir = directory
        self.names = directory.names() if directory else []
        self.leases: dict[Key, str] = {}
        for name in self.names:
            key = _key_from_name(name)
            if key is not None:
                self.leases[key] = name
        self._content: dict[Key, str | None] = {}

    def taken(self, family: int) -> set[int]:
        return {value for version, value in self.leases if version == family}

    def name(self, ip: IPAddress) -> str:
        return self.leases[_ip_key(ip)]

    def owner(self, key: Key) -> str | None:
        if key not in self._content:
            text = self.dir.read_lease(self.leases[key]) if self.dir else None
            self._content[key] = None if text is None else text.strip()
        return self._content[key]

    def held(self, owner: str, rset: RangeSet | None = None) -> list[IPAddress]:
        """Addresses whose file holds exactly `owner`; only files inside `rset` are read when given."""
        keys: list[Key] = sorted(self.leases)
        if rset is not None:
            family, bounds = _set_bounds(rset)
            keys = [k for k in keys if k[0] == family and any(lo <= k[1] <= hi for lo, hi in bounds)]
        return [_key_ip(k) for k in keys if self.owner(k) == owner]


class HostLocalStore:
    """Leases of one network in `<dataDir>/<name>/`, shared with the reference host-local binary."""

    def __init__(self, config: HostLocalConfig) -> None:
        self.config = config
        self.path = config.store_dir
        self.reused = False  # set by allocate()
        self.reserved: list[Lease] = []  # set by allocate(): the leases it took now, not found held

    # -- public API -------------------------------------------------------

    def allocate(self, container_id: str, ifname: str) -> list[Lease]:
        """One lease per range set; everything newly taken is given back if any set fails."""
        # The id and ifname end up inside lease files; a stray CR/LF would forge another owner.
        validate_container_id(container_id)
        validate_ifname(ifname)
        requested = self._assign_requests()
        owner = _owner_text(container_id, ifname)
        leases: list[Lease] = []
        taken_now: list[str] = []
        with self._open(create=True) as directory, self._lock_file(directory, create=True) as lock_fd:
            try:
                for index, rset in enumerate(self.config.range_sets):
                    with _flock(lock_fd, fcntl.LOCK_EX):
                        lease, new_name = self._allocate_set(directory, index, rset, owner, requested[index], True)
                    leases.append(lease)
                    if new_name:
                        taken_now.append(new_name)
            except BaseException:
                with _flock(lock_fd, fcntl.LOCK_EX):
                    for name in taken_now:
                        if (directory.read(name) or "").strip() == owner:
                            directory.unlink(name)
                raise
        # A retried ADD gets back what it already held; the engine must then not
        # release those addresses if the retry fails, as a working pod uses them:
        # a rollback gives back `reserved` only (release_ips), never what was found.
        self.reused = not taken_now
        self.reserved = [lease for lease in leases if str(lease.ip) in taken_now]
        return leases

    def preview(self, container_id: str, ifname: str) -> list[Lease]:
        """What `allocate` would return right now; creates, writes and locks nothing new."""
        requested = self._assign_requests()
        owner = _owner_text(container_id, ifname)
        with self._open(create=False) as directory, self._lock_file(directory, create=False) as lock_fd:
            leases = []
            for index, rset in enumerate(self.config.range_sets):
                with _flock(lock_fd, fcntl.LOCK_SH):
                    lease, _ = self._allocate_set(directory, index, rset, owner, requested[index], write=False)
                leases.append(lease)
            return leases

    def release(self, container_id: str, ifname: str) -> None:
        """Reference DEL: drop `cid\\r\\nifname` files, or if there are none, legacy files holding just `cid`."""
        with self._open(create=False) as directory:
            if directory is None:
                return
            with self._lock_file(directory, create=True) as lock_fd, _flock(lock_fd, fcntl.LOCK_EX):
                snap = _Snapshot(directory)
                victims = snap.held(_owner_text(container_id, ifname)) or snap.held(container_id.strip())
                errors = []
                for ip in victims:
                    try:
                        directory.unlink(snap.name(ip))
                    except OSError as err:
                        errors.append(f"{ip}: {err.strerror}")
                if errors:
                    raise CniError(IO_FAILURE, "host-local store: failed to release", "; ".join(errors))

    def release_ips(self, container_id: str, ifname: str, ips: list[IPAddress]) -> None:
        """A failed ADD's rollback: drop exactly these lease files, and only while they still name this
        attachment. Leases the ADD found held stay: a running pod may be using them."""
        owner = _owner_text(container_id, ifname)
        with self._open(create=False) as directory:
            if directory is None:
                return
            with self._lock_file(directory, create=True) as lock_fd, _flock(lock_fd, fcntl.LOCK_EX):
                for ip in ips:
                    if (directory.read(str(ip)) or "").strip() == owner:
                        directory.unlink(str(ip))

    def held_anywhere(self, container_id: str, ifname: str) -> list[tuple[IPAddress, int]]:
        """Every address this attachment holds, with its range set's index (-1: in none of the conf's sets)."""
        snap = self._read_snapshot()
        held = snap.held(_owner_text(container_id, ifname)) or snap.held(container_id.strip())
        return [(ip, self._set_index(ip)) for ip in held]

    def find(self, container_id: str, ifname: str) -> list[Lease]:
        """The configured-set leases this attachment holds (legacy `cid`-only files if it has no others)."""
        return self._find(self._read_snapshot(), container_id, ifname)

    def holds(self, container_id: str, ifname: str) -> bool:
        """Reference CHECK: any file in the store naming this attachment, in either form, even outside the sets."""
        return self._holds(self._read_snapshot(), container_id, ifname)

    def check(self, container_id: str, ifname: str) -> list[Lease] | None:
        """`holds` and then `find`, on one read of the store (each reads every lease file): None if not held."""
        snap = self._read_snapshot()
        return self._find(snap, container_id, ifname) if self._holds(snap, container_id, ifname) else None

    def _find(self, snap: _Snapshot, container_id: str, ifname: str) -> list[Lease]:
        held = snap.held(_owner_text(container_id, ifname)) or snap.held(container_id.strip())
        leases = []
        for ip in held:
            lease = self._lease_for(ip)
            if lease is not None:
                leases.append(lease)
        return sorted(leases, key=lambda lease: (lease.range_set_index, _ip_key(lease.ip)))

    @staticmethod
    def _holds(snap: _Snapshot, container_id: str, ifname: str) -> bool:
        wanted = (_owner_text(container_id, ifname), container_id.strip())
        return any(snap.owner(key) in wanted for key in snap.leases)

    def allocations(self) -> list[Allocation]:
        snap = self._read_snapshot()
        out = []
        for key in sorted(snap.leases):
            text = snap.owner(key)
            if text is None:
                continue
            cid, _, ifname = text.partition(LINE_BREAK)
            ip = _key_ip(key)
            out.append(Allocation(ip, cid.strip(), ifname, self._set_index(ip)))
        return out

    def has_free(self, range_set_index: int) -> bool:
        """Cheap STATUS probe: stops at the first free address, reads no file content."""
        rset = self.config.range_sets[range_set_index]
        taken = self._read_snapshot(contents=False).taken(rset.family)
        for rng in rset.ranges:
            gateway = _int_or_none(rng.gateway)
            cur, end = int(rng.range_start), int(rng.range_end)
            # Every step either hits a taken address or the gateway, so this ends after len(taken)+2 steps.
            while cur <= end:
                if cur not in taken and cur != gateway:
                    return True
                cur += 1
        return False

    def free_count(self, range_set_index: int) -> int:
        rset = self.config.range_sets[range_set_index]
        taken = self._read_snapshot(contents=False).taken(rset.family)
        free = 0
        for rng in rset.ranges:
            start, end = int(rng.range_start), int(rng.range_end)
            used = {ip for ip in taken if start <= ip <= end}
            if rng.gateway is not None and start <= int(rng.gateway) <= end:
                used.add(int(rng.gateway))
            free += end - start + 1 - len(used)
        return free

    # -- allocation -------------------------------------------------------

    def _assign_requests(self) -> list[IPAddress | None]:
        """Give each set the first requested IP it contains; leftovers fail before anything is written.

        The reference checks leftovers only after allocating (and then releases);
        the outcome and message are the same, without the wasted writes.
        """
        remaining = list(self.config.requested_ips)
        assigned: list[IPAddress | None] = []
        for rset in self.config.range_sets:
            pick = next((ip for ip in remaining if rset.contains(ip)), None)
            if pick is not None:
                remaining.remove(pick)
            assigned.append(pick)
        if remaining:
            text = " ".join(str(ip) for ip in remaining)
            raise CniError(GENERIC_GO_ERROR, f"failed to allocate all requested IPs: {text}")
        return assigned

    def _allocate_set(
        self,
        directory: _Dir | None,
        index: int,
        rset: RangeSet,
        owner: str,
        requested: IPAddress | None,
        write: bool,
    ) -> tuple[Lease, str | None]:
        """Pick (and, if `write`, reserve) one address of a set; must run under the lock.

        Returns the lease and the file name created, None when the attachment
        already held it (or nothing was written).
        """

        def fail(msg: str) -> CniError:
            return CniError(GENERIC_GO_ERROR, f"failed to allocate for range {index}: {msg}")

        snap = _Snapshot(directory)
        taken = snap.taken(rset.family)
        cid = owner.partition(LINE_BREAK)[0]
        held = snap.held(owner, rset)
        if held and (requested is None or requested in held):
            return self._make_lease(held[0] if requested is None else requested, index, rset), None
        if held:
            raise fail(f"{held[0]} has been allocated to {cid}, duplicate allocation is not allowed")

        reserver = _Reserver(directory, snap, owner, index) if write else None
        try:
            if requested is not None:
                rng = rset.range_for(requested)
                if rng is None:  # _assign_requests only hands a set addresses it contains
                    raise fail(f"{requested} not in range set {rset.text}")
                if requested == rng.gateway:
                    raise fail(f"requested ip {requested} is subnet's gateway")
                free = int(requested) not in taken and (reserver is None or reserver.take(requested))
                if not free:
                    raise fail(f"requested IP address {requested} is not available in range set {rset.text}")
                return self._make_lease(requested, index, rset), str(requested) if write else None

            family = type(rset.ranges[0].range_start)
            for _, value in _round_robin(rset, self._last_reserved(directory, index)):
                if value in taken:
                    continue
                ip = family(value)
                if reserver is None or reserver.take(ip):
                    return self._make_lease(ip, index, rset), str(ip) if write else None
            raise fail(f"no IP addresses available in range set: {rset.text}")
        finally:
            if reserver is not None:
                reserver.close()

    def _last_reserved(self, directory: _Dir | None, index: int) -> IPAddress | None:
        text = directory.read(f"{LAST_RESERVED_PREFIX}{index}", 64) if directory else None
        try:
            return ip_address(text.strip()) if text else None
        except ValueError:
            return None  # like the reference: lose round robin once, never fail on it

    def _make_lease(self, ip: IPAddress, index: int, rset: RangeSet) -> Lease:
        rng = rset.range_for(ip)
        assert rng is not None
        return Lease(ip_interface(f"{ip}/{rng.subnet.prefixlen}"), rng.gateway, index)

    def _lease_for(self, ip: IPAddress) -> Lease | None:
        index = self._set_index(ip)
        return None if index < 0 else self._make_lease(ip, index, self.config.range_sets[index])

    def _set_index(self, ip: IPAddress) -> int:
        return next((i for i, rset in enumerate(self.config.range_sets) if rset.contains(ip)), -1)

    # -- directory and lock -----------------------------------------------

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
            snap = _Snapshot(directory)
            if contents:
                for key in snap.leases:
                    snap.owner(key)
            snap.dir = None  # the fd closes on exit; nothing may read through it later
            return snap


class _Reserver:
    """Creates lease files for one set: one fsync'd temp file, hard-linked to each candidate until one sticks."""

    def __init__(self, directory: _Dir | None, snap: _Snapshot, owner: str, index: int) -> None:
        assert directory is not None
        self.dir = directory
        self.owner = owner
        self.index = index
        self.tmp: str | None = None
        self.dir.remove_stale_tmp(snap.names)

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
