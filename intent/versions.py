"""CNI spec versions: which we speak and how they compare.

Stdlib only, because VERSION must answer without importing anything heavy.
"""

from __future__ import annotations

from intent.errors import INCOMPATIBLE_VERSION, CniError

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LIBRARY_VERSION = "1.1.0"

# The first version that has a command; older confs get code 1 for it.
_COMMAND_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions", f"invalid version {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def version_info_json() -> str:
    """VERSION's answer, byte for byte what the Go library prints (compact JSON),
    written out by hand so VERSION never imports json."""
    versions = ",".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
    return f'{{"cniVersion":"{LIBRARY_VERSION}","supportedVersions":[{versions}]}}'


def require_supported(version: str) -> str:
    """Return the effective version (empty means 0.1.0) or raise code 1."""
    effective = version or "0.1.0"
    if effective not in SUPPORTED_VERSIONS:
        quoted = " ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        raise CniError(
            INCOMPATIBLE_VERSION, "incompatible CNI versions", f'config is "{effective}", plugin supports [{quoted}]'
        )
    return effective


def require_command_allowed(command: str, version: str) -> None:
    since = _COMMAND_SINCE.get(command)
    if since and parse_version(version) < parse_version(since):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}")
