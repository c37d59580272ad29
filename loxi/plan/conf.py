"""Read a `.conf` or `.conflist` from disk into the `NetConf` the plugin would get on stdin.

A runtime hands the plugin one plugin object of a conflist, with the list's
`cniVersion` and `name` injected (libcni's `buildOneConfig`); loxi-plan must see
exactly that object, or its plan would be for a different conf than ADD's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intent.config import NetConf, decode, load_netconf
from intent.env import CniRequest
from intent.errors import DECODE_FAILURE, INVALID_NETWORK_CONFIG, CniError
from intent.safe_io import read_regular, read_stream
from intent.versions import SUPPORTED_VERSIONS, parse_version

PLUGIN_TYPE = "loxi-cni"


@dataclass(frozen=True)
class LoadedConf:
    """The plugin object as the plugin would receive it, and where it came from."""

    source: str
    doc: dict[str, Any]  # the plugin object, with cniVersion and name injected for a conflist
    stdin: bytes  # what a runtime would write on the plugin's stdin
    plugin_index: int | None  # index in `plugins`, None for a single .conf


def read_bytes(path: str) -> bytes:
    """The file's content; `-` is stdin. OSError propagates to the CLI's one-line error.

    Only a regular file is read (a FIFO would block, a device is not a conf),
    and at most intent.safe_io.MAX_CONF_BYTES of it or of stdin.
    """
    if path == "-":
        import sys

        data = read_stream(getattr(sys.stdin, "buffer", sys.stdin))  # a text stream (tests) has no buffer
        return data.encode() if isinstance(data, str) else data
    return read_regular(path)


def pick_version(conflist: Mapping[str, Any]) -> str:
    """libcni (1.1): the highest of cniVersion ∪ cniVersions that it supports."""
    version = conflist.get("cniVersion") or ""
    candidates = [version] if isinstance(version, str) else []
    extra = conflist.get("cniVersions")
    if isinstance(extra, list):
        candidates += [v for v in extra if isinstance(v, str)]
    supported = [v for v in candidates if v in SUPPORTED_VERSIONS]
    if not supported:
        return version if isinstance(version, str) else ""
    return max(supported, key=parse_version)


def plugin_object(doc: Mapping[str, Any], source: str) -> tuple[dict[str, Any], int | None]:
    """The loxi-cni object of a conflist (name and version injected), or the .conf itself."""
    if "plugins" not in doc:
        return dict(doc), None
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise CniError(INVALID_NETWORK_CONFIG, f"{source}: plugins: expected a non-empty array")
    for index, plugin in enumerate(plugins):
        if isinstance(plugin, Mapping) and plugin.get("type") == PLUGIN_TYPE:
            injected = dict(plugin)
            injected["cniVersion"] = pick_version(doc)
            injected["name"] = doc.get("name")
            return injected, index
    raise CniError(INVALID_NETWORK_CONFIG, f"{source}: no plugin of type {PLUGIN_TYPE!r} in the list")


def load_conf(path: str) -> LoadedConf:
    """Decode `path` (a .conf, a .conflist, or `-`) and extract the loxi-cni plugin object."""
    data = read_bytes(path)
    source = "<stdin>" if path == "-" else path
    try:
        doc = decode(data)
    except CniError as exc:
        raise CniError(DECODE_FAILURE, f"{source}: {exc.msg}") from None
    plugin, index = plugin_object(doc, source)
    return LoadedConf(source, plugin, json.dumps(plugin).encode(), index)


def netconf_of(loaded: LoadedConf, request: CniRequest) -> NetConf:
    """The plugin's own typing and checks (schema, versions, unsupported keys)."""
    return load_netconf(loaded.stdin, request, dict(loaded.doc))
