"""Where each value of a JSON text sits (line and column), so a problem can be reported as `file:line:col`.

`json.loads` throws positions away. This is a small recursive-descent walk over
text that `json.loads` has already accepted, so it only has to find where
things start, not check the grammar. Strings are scanned with the json
module's own `scanstring`, so escapes are handled exactly as the decoder does.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from dataclasses import dataclass, field
from json.decoder import scanstring

Path = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based, in characters


@dataclass
class Locator:
    """Offsets of every value (`values`) and every object member's key (`keys`), by JSON path."""

    text: str
    values: dict[Path, int] = field(default_factory=dict)
    keys: dict[Path, int] = field(default_factory=dict)
    duplicates: list[Path] = field(default_factory=list)  # members whose key appeared before in the same object
    _line_starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", self.text)]
        # Not JSON after all: the positions found so far stay, the rest fall back to their parent.
        with contextlib.suppress(IndexError, ValueError):
            self._value(self._skip(0), ())

    # -- queries ------------------------------------------------------------

    def position_of(self, offset: int) -> Position:
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return Position(line + 1, offset - self._line_starts[line] + 1)

    def value(self, path: Path) -> Position:
        """Where the value at `path` starts; for a path that is not in the text, its nearest ancestor."""
        for end in range(len(path), -1, -1):
            offset = self.values.get(tuple(path[:end]))
            if offset is not None:
                return self.position_of(offset)
        return Position(1, 1)

    def key(self, path: Path) -> Position:
        """Where the key of the member at `path` starts (for unknown-key reports)."""
        offset = self.keys.get(tuple(path))
        return self.position_of(offset) if offset is not None else self.value(path)

    # -- the walk -------------------------------------------------------------

    def _skip(self, i: int) -> int:
        return _WS.match(self.text, i).end()  # type: ignore[union-attr]  # matches the empty string too

    def _value(self, i: int, path: Path) -> int:
        self.values[path] = i
        char = self.text[i]
        if char == "{":
            return self._object(i + 1, path)
        if char == "[":
            return self._array(i + 1, path)
        if char == '"':
            return scanstring(self.text, i + 1)[1]
        for literal in _LITERALS:
            if self.text.startswith(literal, i):
                return i + len(literal)
        match = _NUMBER.match(self.text, i)
        if match is None:
            raise ValueError(f"unexpected {char!r} at {i}")
        return match.end()

    def _object(self, i: int, path: Path) -> int:
        i = self._skip(i)
        if self.text[i] == "}":
            return i + 1
        seen: set[str] = set()
        while True:
            key, end = scanstring(self.text, i + 1)
            member = (*path, key)
            if key in seen:
                self.duplicates.append(member)
            seen.add(key)
            self.keys[member] = i
            i = self._skip(end)  # at ':'
            i = self._skip(self._value(self._skip(i + 1), member))
            if self.text[i] == "}":
                return i + 1
            i = self._skip(i + 1)  # past ','

    def _array(self, i: int, path: Path) -> int:
        i = self._skip(i)
        if self.text[i] == "]":
            return i + 1
        index = 0
        while True:
            i = self._skip(self._value(i, (*path, index)))
            if self.text[i] == "]":
                return i + 1
            i = self._skip(i + 1)
            index += 1


def format_path(path: Path) -> str:
    """`ipam.ranges[0][1].subnet`; `$` for the document itself; odd keys quoted (`["cni.dev/x"]`)."""
    if not path:
        return "$"
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def parse_path(text: str) -> Path:
    """The inverse of `format_path` for the paths intent/ipam_config writes in its messages."""
    parts: list[str | int] = []
    for match in re.finditer(r'\["([^"]*)"\]|\[(\d+)\]|\.?([A-Za-z_][A-Za-z0-9_\-]*)', text):
        quoted, index, name = match.groups()
        parts.append(quoted if quoted is not None else int(index) if index is not None else name)
    return tuple(parts)
