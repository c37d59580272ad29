"""CNI error objects.

Every failure of loxi-cni leaves the process as one of these, printed on stdout
as the CNI spec's error document. Keeping the taxonomy in one stdlib-only module
lets the cheapest code paths (VERSION, argument checks) raise them without
importing anything heavy.
"""

from __future__ import annotations

# Codes from the CNI spec (SPEC.md, "Error") and what the Go library uses.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_LIMITED = 51

# Plugin-specific codes (100+), one per kind of failure so runtimes and
# operators can tell them apart without reading the message.
KERNEL_ERROR = 100  # netlink or sysctl refused an operation of the plan
CONFLICT = 101  # an existing object is in the way and is not ours
KERNEL_FEATURE_MISSING = 102  # the running kernel lacks something the conf needs
DELEGATE_FAILED = 103  # a delegated IPAM plugin failed without a CNI error
CHECK_FAILED = 104  # CHECK found the attachment drifted from its intent
MISSING_OBJECT = 105  # something the conf names must exist and does not (the uplink)
INTERNAL_ERROR = 110  # a bug in loxi-cni; the message says where
# The reference host-local plugin reports pool exhaustion as a plain Go error,
# which the Go skel wraps as 999. Runtimes and scripts match on it, so keep it.
GENERIC_GO_ERROR = 999


class CniError(Exception):
    """A failure that maps to one CNI error document.

    A plain class, not a dataclass: importing `dataclasses` (and `inspect` with
    it) would cost VERSION a fifth of its run time.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(code, msg, details)
        self.code = code
        self.msg = msg
        self.details = details

    def __repr__(self) -> str:
        return f"CniError(code={self.code!r}, msg={self.msg!r}, details={self.details!r})"

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {"code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def to_json(self) -> str:
        """The Go library's layout: 4-space indent, no trailing newline."""
        import json  # not on VERSION's path: json pulls in re (~13 ms)

        return json.dumps(self.to_dict(), indent=4)
