"""CNI error objects.

Every failure of loxi-cni leaves the process as one of these, printed on stdout
as the CNI spec's error document. Keeping the taxonomy in one stdlib-only module
lets the cheapest code paths (VERSION, argument checks) raise them without
importing anything heavy.

`dumps_indented`, the Go library's layout of a printed document, lives here too:
an error and a result (`intent.result.format_result`) are printed by the same
code, and this is the module every error path has already imported. json is
imported on the first document printed, not with this module.
"""

from __future__ import annotations

# typing costs ~4 ms to import and no error path needs it otherwise; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
        return dumps_indented(self.to_dict())


# -- the Go library's layout (`json.MarshalIndent` with 4 spaces), for errors and results alike ---------

_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})
_PAD = ["\n" + " " * (4 * level) for level in range(8)]  # a newline and the indent of each level
_encoders: dict[int, Any] = {}  # nesting level -> json's C encoder whose item separator indents to that level
# json.encoder's c_make_encoder and encode_basestring_ascii, bound by the first `dumps_indented`: importing
# json pulls in re (~13 ms), which VERSION's answer never needs. `_make_encoder` stays None without json's C
# accelerator (then json.dumps prints everything).
_json_bound = False
_make_encoder: Any = None
_encode_str: Any = None


def _encoder(level: int) -> Any:
    enc = _encoders.get(level)
    if enc is None:
        enc = _encoders[level] = _make_encoder(
            None, None, _encode_str, None, ": ", "," + _pad(level), False, False, True
        )
    return enc


def _pad(level: int) -> str:
    return _PAD[level] if level < len(_PAD) else "\n" + " " * (4 * level)


def _indented(value: Any, level: int) -> str | None:
    """`value` as `json.dumps(value, indent=4)` prints it at `level`; None for what only json.dumps may say."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif kind is str:
        return _encode_str(value)
    elif kind in _SCALARS:
        return "".join(_encoder(0)(value, 0))
    else:
        return None
    if not value:
        return "{}" if kind is dict else "[]"
    if kind is dict and not _STR.issuperset(map(type, value)):
        return None  # json's coercion of other keys: left to json
    close = _pad(level)
    if _SCALARS.issuperset(map(type, items)):  # json's C encoder lays out a container of scalars
        flat = "".join(_encoder(level + 1)(value, 0))
        return flat[0] + _pad(level + 1) + flat[1:-1] + close + flat[-1]
    parts = [_indented(item, level + 1) for item in items]
    if None in parts:
        return None
    if kind is dict:
        parts = [f"{_encode_str(key)}: {text}" for key, text in zip(value, parts, strict=True)]
        return "{" + _pad(level + 1) + ("," + _pad(level + 1)).join(parts) + close + "}"
    return "[" + _pad(level + 1) + ("," + _pad(level + 1)).join(parts) + close + "]"


def dumps_indented(doc: Any) -> str:
    """`json.dumps(doc, indent=4)`, byte for byte, with json's C encoder doing the encoding: its
    pure-Python encoder (which `indent` selects) costs more than the rest of a result's printing."""
    global _json_bound, _make_encoder, _encode_str
    if not _json_bound:
        from json import encoder  # `from json.encoder import` would log a second json.encoder in -X importtime

        _make_encoder, _encode_str, _json_bound = encoder.c_make_encoder, encoder.encode_basestring_ascii, True
    try:
        text = _indented(doc, 0) if _make_encoder is not None else None
    except RecursionError:  # a cycle, or nesting too deep: json.dumps says which
        text = None
    if text is None:
        import json

        text = json.dumps(doc, indent=4)
    return text
