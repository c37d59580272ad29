"""CNI_NETNS as the calling process resolved it, for loxi-agent's requests.

A path such as `/proc/self/ns/net`, `/proc/thread-self/ns/net`, `/dev/fd/N` or
`/proc/self/fd/N`, or a symlink to one of them, names a different file in every
process. Resolved inside loxi-agent it would name the agent's own namespace (an
ADD would then build the pod's interface there, where the plugin run in-process
refuses the same call with code 8). So the thin client resolves CNI_NETNS itself,
the way `applier.netns.open_netns` does (stat, and open only a regular file,
non-blocking), and sends the outcome with the request: the open descriptor, the
mode of a file that is not regular, or the errno. The agent installs that outcome
for the request's thread (`installed`), and `stat` and `open` below answer from
it for that exact path, so every check `open_netns` and `same_namespace` make sees
what the caller saw. In-process nothing is installed: they are `os.stat` and
`os.open`.

Stdlib only; nothing here runs unless loxi-agent installed a view.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_local = threading.local()


@dataclass(frozen=True)
class CallerView:
    """How the caller's stat and open of `path` ended: exactly one of the three is set."""

    path: str
    fd: int = -1  # the caller's descriptor of `path` (owned by whoever received it)
    mode: int = 0  # st_mode of a file that is not regular (the caller did not open it)
    error: int = 0  # errno of the caller's stat or open


def parse_view(path: str, value: str, fd: int) -> CallerView | None:
    """The wire form (`loxi.agent.protocol.CALLER_NETNS_KEY`): `fd`, `mode:N` or `errno:N`; None if malformed."""
    kind, _, number = value.partition(":")
    if kind == "fd" and not number and fd >= 0:
        return CallerView(path, fd=fd)
    if kind in ("mode", "errno") and number.isdigit() and fd < 0:
        return CallerView(path, mode=int(number)) if kind == "mode" else CallerView(path, error=int(number) or 1)
    return None


@contextmanager
def installed(view: CallerView | None) -> Iterator[None]:
    """Answer `stat` and `open` of the view's path from it, in this thread, for the block."""
    saved = getattr(_local, "view", None)
    _local.view = view
    try:
        yield
    finally:
        _local.view = saved


def _view(path: str) -> CallerView | None:
    view: CallerView | None = getattr(_local, "view", None)
    return view if view is not None and view.path == path else None


def stat(path: str) -> os.stat_result:
    view = _view(path)
    if view is None:
        return os.stat(path)
    if view.error:
        raise OSError(view.error, os.strerror(view.error), path)
    if view.fd >= 0:
        return os.fstat(view.fd)
    return os.stat_result((view.mode, 0, 0, 0, 0, 0, 0, 0, 0, 0))


def open_path(path: str, flags: int) -> int:
    """`os.open(path, flags)`, or a new descriptor of the file the caller opened."""
    view = _view(path)
    if view is None:
        return os.open(path, flags)
    if view.fd < 0:  # stat answered first and raised or reported a non-regular file
        code = view.error or errno.ENXIO
        raise OSError(code, os.strerror(code), path)
    return os.dup(view.fd)  # non-inheritable, as O_CLOEXEC
