"""CNI_NETNS as the caller resolved it: the client's side, the wire form, and the agent's replay.

The client (`loxi.plugin.client.caller_netns`) stats and opens the path in its own
process; `applier.caller_netns` replays that outcome in the agent's thread, so
`stat` and `open_path` there give what the caller's calls gave. No kernel
namespace is needed: a regular file, a FIFO and a missing path stand in.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from applier import caller_netns
from loxi.plugin.client import caller_netns as client_view


def replay(path: str, value: bytes, fd: int) -> caller_netns.CallerView:
    view = caller_netns.parse_view(path, value.decode(), fd)
    assert view is not None
    return view


def test_a_regular_file_travels_as_its_descriptor(tmp_path):
    target = tmp_path / "ns"
    target.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    value, fd = client_view(str(link).encode())
    try:
        assert value == b"fd" and fd >= 0
        view = replay(str(link), value, fd)
        with caller_netns.installed(view):
            assert caller_netns.stat(str(link)).st_ino == os.stat(target).st_ino
            copy = caller_netns.open_path(str(link), os.O_RDONLY)
            try:
                assert os.fstat(copy).st_ino == os.stat(target).st_ino
            finally:
                os.close(copy)
    finally:
        os.close(fd)


def test_a_fifo_is_never_opened_and_keeps_its_mode(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    value, fd = client_view(str(fifo).encode())
    assert fd == -1 and value.startswith(b"mode:")
    with caller_netns.installed(replay(str(fifo), value, fd)):
        assert stat.S_ISFIFO(caller_netns.stat(str(fifo)).st_mode)
        with pytest.raises(OSError):
            caller_netns.open_path(str(fifo), os.O_RDONLY)


def test_an_error_is_raised_again_as_the_same_exception(tmp_path):
    gone = str(tmp_path / "gone")
    value, fd = client_view(gone.encode())
    assert (value, fd) == (b"errno:%d" % errno.ENOENT, -1)
    with caller_netns.installed(replay(gone, value, fd)), pytest.raises(FileNotFoundError):
        caller_netns.stat(gone)


def test_the_view_answers_only_for_its_own_path_and_only_while_installed(tmp_path):
    gone = str(tmp_path / "gone")
    other = tmp_path / "other"
    other.write_text("x")
    with caller_netns.installed(caller_netns.CallerView(gone, error=errno.ENOENT)):
        assert caller_netns.stat(str(other)).st_size == 1
    assert caller_netns.stat(str(other)).st_size == 1
    with pytest.raises(FileNotFoundError):
        caller_netns.stat(gone)


def test_relative_paths_are_left_to_the_agent_and_malformed_views_are_refused():
    assert client_view(b"var/run/netns/x") == (b"", -1)
    assert client_view(b"") == (b"", -1)
    assert caller_netns.parse_view("/x", "fd", -1) is None
    assert caller_netns.parse_view("/x", "errno:2", 5) is None
    assert caller_netns.parse_view("/x", "mode:abc", -1) is None
    assert caller_netns.parse_view("/x", "", -1) is None
