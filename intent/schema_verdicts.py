"""Which network configs have already passed the schema on this node.

Importing jsonschema (with referencing, attrs, rpds and the metaschemas) is
about 100 ms of a cold loxi-cni call, a fifth of it. Yet kubelet adds every pod
of a network with the very same config, and a schema check is a pure function
of the config, the schema and the jsonschema code. So when a cold process has
validated a config, it leaves an empty file named by the digest of those three
in `/run/loxi/schema-ok/` (tmpfs: gone at reboot), and the next cold process
with the same config skips jsonschema. loxi-agent has its validator built and
never needs this.

Only successes are remembered (a bad config is checked, and refused, every
time). CHECK and DEL carry the pod's `prevResult`, which the conf schema only
requires to be an object: when the schema says exactly that and nothing at its
top level relates one property to another, the key is taken with the
prevResult replaced by `{}`, so a node holds about one entry per network and
command shape. Otherwise such configs are not remembered. The directory is
emptied when it reaches MAX_ENTRIES. The directory must be a real directory owned by
this user with no group or other access, or the cache is not used. Any error
here means "validate", never a failed call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
from collections.abc import Mapping
from typing import Any

DEFAULT_DIR = "/run/loxi/schema-ok"
MAX_ENTRIES = 256


def verdict_dir() -> str:
    """LOXI_SCHEMA_CACHE_DIR, or the default; an empty value turns the cache off."""
    return os.environ.get("LOXI_SCHEMA_CACHE_DIR", DEFAULT_DIR)


def _validator_identity() -> bytes:
    """Changes whenever jsonschema is installed anew (its verdicts may change with it)."""
    spec = importlib.util.find_spec("jsonschema")
    if spec is None or not spec.origin:
        raise OSError("jsonschema not found")
    info = os.stat(spec.origin)
    return f"{spec.origin}:{info.st_size}:{info.st_mtime_ns}".encode()


def _usable_dir(directory: str) -> bool:
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


# Top-level keywords that could make one property's verdict depend on another's.
_COUPLING_KEYWORDS = frozenset(
    {
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "additionalProperties",
        "unevaluatedProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "$ref",
        "$dynamicRef",
    }
)


def _without_prev_result(doc: Mapping[str, Any], schema: bytes) -> Mapping[str, Any] | None:
    """`doc` with prevResult as `{}` when the schema checks nothing inside it; None when it may."""
    if "prevResult" not in doc:
        return doc
    if not isinstance(doc["prevResult"], dict):
        return None
    parsed = json.loads(schema)
    if _COUPLING_KEYWORDS & parsed.keys() or parsed.get("properties", {}).get("prevResult") != {"type": "object"}:
        return None
    return {**doc, "prevResult": {}}


def verdict_key(doc: Mapping[str, Any], schema: bytes) -> str | None:
    """The digest naming `doc`'s verdict, or None when the cache is off or unusable for it."""
    directory = verdict_dir()
    if not directory:
        return None
    try:
        if not _usable_dir(directory):
            return None
        keyed = _without_prev_result(doc, schema)
        if keyed is None:
            return None
        canonical = json.dumps(keyed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        identity = _validator_identity()
    except (OSError, ValueError, TypeError):
        return None
    digest = hashlib.sha256()
    for part in (identity, schema, canonical.encode("utf-8", "surrogatepass")):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def known_valid(key: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(os.path.join(verdict_dir(), key)).st_mode)
    except OSError:
        return False


def remember_valid(key: str) -> None:
    """Best effort: a verdict that cannot be written is simply not remembered."""
    directory = verdict_dir()
    try:
        entries = os.listdir(directory)
        if len(entries) >= MAX_ENTRIES:
            for entry in entries:
                os.unlink(os.path.join(directory, entry))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(os.path.join(directory, key), flags, 0o600))
    except OSError:
        pass
