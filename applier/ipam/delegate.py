"""Running another IPAM plugin the way libcni's invoke package does.

Only the lookup, the environment and the error mapping matter to callers: a
delegate's own CNI error must reach the runtime unchanged, anything else
becomes code 103 with the delegate's output as details. `subprocess` is
imported lazily so the host-local path never pays for it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from typing import Any

from intent.env import CniRequest
from intent.errors import DELEGATE_FAILED, INVALID_NETWORK_CONFIG, CniError

TIMEOUT_SECONDS = 60.0
# libcni retries an exec that hits "text file busy" (a binary being replaced) 5 times, 1 s apart.
TEXT_BUSY_RETRIES = 5
TEXT_BUSY_DELAY = 1.0
MAX_DETAILS = 4096


def check_plugin_name(plugin_type: str) -> None:
    """A plugin type is a file name in CNI_PATH, never a path."""
    if not plugin_type:
        raise CniError(INVALID_NETWORK_CONFIG, "ipam.type: no plugin name provided")
    if "/" in plugin_type or "\0" in plugin_type or plugin_type in (".", ".."):
        raise CniError(INVALID_NETWORK_CONFIG, f"ipam.type: {plugin_type!r} must be a plain plugin name")


def find_plugin(plugin_type: str, paths: tuple[str, ...]) -> str:
    """First regular file named `plugin_type` in `paths`, like Go's invoke.FindInPath."""
    check_plugin_name(plugin_type)
    if not paths:
        raise CniError(DELEGATE_FAILED, "no paths provided")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    # Go prints the slice as `[a b]`.
    raise CniError(DELEGATE_FAILED, f'failed to find plugin "{plugin_type}" in path [{" ".join(paths)}]')


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[:MAX_DETAILS]


def _cni_error(stdout: bytes) -> CniError | None:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    code, msg, details = doc.get("code"), doc.get("msg"), doc.get("details", "")
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(msg, str):
        return CniError(code, msg, details if isinstance(details, str) else json.dumps(details))
    return None


def run_ipam_plugin(plugin_type: str, command: str, stdin: bytes, request: CniRequest) -> dict[str, Any] | None:
    """Exec the delegate with our environment but `CNI_COMMAND=command`; its parsed stdout, or None if empty."""
    import subprocess

    path = find_plugin(plugin_type, request.path)
    env = dict(request.environ)
    env["CNI_COMMAND"] = command
    # Tests and internal callers may hand over a request without a raw environment.
    for key, value in (
        ("CNI_CONTAINERID", request.container_id),
        ("CNI_NETNS", request.netns),
        ("CNI_IFNAME", request.ifname),
        ("CNI_PATH", ":".join(request.path)),
    ):
        env.setdefault(key, value)

    for attempt in range(TEXT_BUSY_RETRIES + 1):
        try:
            proc = subprocess.run(
                [path], input=stdin, env=env, capture_output=True, timeout=TIMEOUT_SECONDS, check=False
            )
            break
        except subprocess.TimeoutExpired:
            raise CniError(
                DELEGATE_FAILED, f"{plugin_type} {command} failed", f"timed out after {TIMEOUT_SECONDS:g}s"
            ) from None
        except OSError as err:
            if err.errno == errno.ETXTBSY and attempt < TEXT_BUSY_RETRIES:
                time.sleep(TEXT_BUSY_DELAY)
                continue
            raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} failed", f"exec {path}: {err.strerror}") from None

    if proc.returncode != 0:
        error = _cni_error(proc.stdout)
        if error is not None:
            raise error
        details = _text(proc.stderr) or _text(proc.stdout) or f"exit status {proc.returncode}"
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} failed", details)

    if not proc.stdout.strip():
        return None
    try:
        doc = json.loads(proc.stdout)
    except ValueError as err:
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} returned invalid JSON", str(err)) from None
    if not isinstance(doc, dict):
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} returned invalid JSON", "not an object")
    return doc
