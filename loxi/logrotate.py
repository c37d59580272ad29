"""Append one line to a log file that rotates by size, safely with many writers at once.

Every loxi-cni process (one per CNI call) and loxi-agent append to the same
files, so rotation cannot be one process's private business: a writer that
renamed `log` to `log.1` while another had `log` open would send the other's
line into the old file, or, worse, two writers would both rotate and drop a
generation. So each append takes an exclusive flock on a companion file
`<log>.lock` (a lock on `log` itself would be lost with the rename), looks at
the size, rotates if the line would pass the bound (`log.N-1` → `log.N`, …,
`log` → `log.1`, the oldest dropped), and writes the line with one write(2).
Bound: at most `max_count` old files besides `log`, each at most `max_size`
bytes unless a single line is larger.

Standard library only (fcntl, os): the plugin's cold path imports it for every
logged command.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

DEFAULT_MAX_SIZE = 10 * 1024 * 1024  # bytes: logFileMaxSize
DEFAULT_MAX_COUNT = 5  # old files kept: logFileMaxCount
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def _open(path: str, flags: int) -> int:
    from intent.safe_io import open_regular  # a FIFO (it would block) or a device is refused, never opened

    return open_regular(path, flags, 0o600)


def _rotate(path: str, max_count: int) -> None:
    if max_count <= 0:
        os.truncate(path, 0)
        return
    for index in range(max_count - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}.{index}", f"{path}.{index + 1}")
    os.replace(path, f"{path}.1")


def append_line(path: str, data: bytes, max_size: int = DEFAULT_MAX_SIZE, max_count: int = DEFAULT_MAX_COUNT) -> None:
    """Append `data` (one line) to `path`, rotating first when it would pass `max_size` (0: never rotate).

    Raises OSError (the caller logs it on stderr and goes on)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    if max_size <= 0:
        fd = _open(path, OPEN_FLAGS)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    lock = _open(path + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = _open(path, OPEN_FLAGS)
        try:
            size = os.fstat(fd).st_size
            if size and size + len(data) > max_size:
                os.close(fd)
                fd = -1
                _rotate(path, max_count)
                fd = _open(path, OPEN_FLAGS)
            os.write(fd, data)
        finally:
            if fd >= 0:
                os.close(fd)
    finally:
        os.close(lock)  # closing drops the flock


def parse_size(value: object, default: int = DEFAULT_MAX_SIZE) -> int:
    """`logFileMaxSize`: bytes as an integer, or a string with a K/M/G suffix ("10M"); anything else: default."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value if value >= 0 else default
    if isinstance(value, str) and value:
        units = {"k": 1024, "m": 1024**2, "g": 1024**3}
        scale = units.get(value[-1].lower(), 1)
        digits = value[:-1] if scale != 1 else value
        if digits.isdigit():
            return int(digits) * scale
    return default


def parse_count(value: object, default: int = DEFAULT_MAX_COUNT) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default
