"""`validate`: every problem of a conf file, each at `file:line:column: json.path: message`.

Three passes over each loxi-cni plugin object: the JSON Schema the plugin itself
uses (schemas/loxi-cni.conf.schema.json), unknown keys (walked from the same
schema: warnings, since runtimes add keys, or errors with `--strict`), and the
semantic rules of `loxi.plan.rules`. When all three are silent, the plugin's
own loaders run as a last check, so "valid" here means the plugin accepts it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from intent.config import SCHEMA_NAME, finite_json_float, load_netconf, refuse_json_constant
from intent.env import CniRequest
from intent.errors import CniError
from intent.ipam_config import load_host_local
from intent.safe_io import read_regular, read_stream
from loxi.plan.conf import PLUGIN_TYPE, pick_version
from loxi.plan.locator import Locator, Path, format_path
from loxi.plan.rules import ERROR, HOST_LOCAL, WARNING, Finding, from_error, semantic_findings

CONF_SUFFIXES = (".conf", ".conflist", ".json")  # what libcni loads from a conf directory
CONFLIST_KEYS = frozenset(
    {"cniVersion", "cniVersions", "name", "plugins", "disableCheck", "disableGC", "loadOnlyInlinedPlugins"}
)
# Objects whose keys belong to someone else: the runtime (runtimeConfig, args,
# capabilities) or a previous plugin (prevResult).
FREE_FORM: frozenset[Path] = frozenset({("runtimeConfig",), ("args",), ("capabilities",), ("prevResult",)})
# Keys the plugin reads that the schema does not list yet.
EXTRA_KNOWN: dict[Path, frozenset[str]] = {("ipam",): frozenset({"dns"})}
RESERVED_PREFIX = "cni.dev/"


@dataclass(frozen=True)
class Problem:
    source: str
    line: int  # 0 when the problem is about the file, not a place in it
    column: int
    path: str
    message: str
    severity: str = ERROR

    def format(self) -> str:
        tag = "warning: " if self.severity == WARNING else ""
        if not self.line:
            return f"{self.source}: {tag}{self.message}"
        return f"{self.source}:{self.line}:{self.column}: {self.path}: {tag}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


@dataclass(frozen=True)
class FileReport:
    source: str
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == WARNING)

    @property
    def valid(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "valid": self.valid, "problems": [p.to_dict() for p in self.problems]}


# -- unknown keys ---------------------------------------------------------------


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return node
    return schema


def _pattern(path: Path) -> Path:
    return tuple("*" if isinstance(p, int) else p for p in path)


def suggest(key: str, known: Iterable[str]) -> str | None:
    """The known key `key` was probably meant to be: a case slip first, then a near miss."""
    known = sorted(known)
    for candidate in known:
        if candidate.lower() == key.lower():
            return candidate
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def unknown_keys(doc: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: Path = ()) -> Iterator[Finding]:
    """Keys the schema does not list, where it lists keys at all; free-form objects are skipped."""
    node = _resolve(schema, root)
    if isinstance(doc, Mapping):
        props = node.get("properties")
        if props is None or _pattern(path) in FREE_FORM:
            return
        if path == ("ipam",) and doc.get("type") != HOST_LOCAL:
            return  # a delegated IPAM plugin has keys of its own
        known = set(props) | EXTRA_KNOWN.get(_pattern(path), frozenset())
        for key, value in doc.items():
            if key in props:
                yield from unknown_keys(value, props[key], root, (*path, key))
            elif key not in known and not key.startswith(RESERVED_PREFIX):
                hint = suggest(key, known)
                text = f"unknown key {key!r}" + (f": did you mean {hint!r}?" if hint else " (ignored by loxi-cni)")
                yield Finding((*path, key), text, WARNING, at_key=True, strict_error=True)
    elif isinstance(doc, list) and isinstance(node.get("items"), Mapping):
        for index, item in enumerate(doc):
            yield from unknown_keys(item, node["items"], root, (*path, index))


# -- one document -----------------------------------------------------------------


class _Reporter:
    """Turns findings inside one plugin object into located problems in the file."""

    def __init__(self, source: str, locator: Locator, strict: bool) -> None:
        self.source = source
        self.locator = locator
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, finding: Finding, prefix: Path = (), list_level: frozenset[str] = frozenset()) -> None:
        path = finding.path
        if not (len(path) == 1 and path[0] in list_level):
            path = (*prefix, *path)
        where = self.locator.key(path) if finding.at_key else self.locator.value(path)
        severity = ERROR if (self.strict and finding.strict_error) else finding.severity
        self.problems.append(
            Problem(self.source, where.line, where.column, format_path(path), finding.message, severity)
        )


def _schema_findings(doc: Mapping[str, Any]) -> list[Finding]:
    import jsonschema

    from schemas import load_schema

    validator = jsonschema.Draft202012Validator(load_schema(SCHEMA_NAME))
    return [Finding(tuple(err.absolute_path), err.message) for err in validator.iter_errors(doc)]


def _plugin_refuses(doc: Mapping[str, Any]) -> Finding | None:
    """The last check: the plugin's own loaders, for anything the rules above do not know yet."""
    try:
        load_netconf(json.dumps(doc).encode(), CniRequest(command="ADD"), dict(doc))
        ipam = doc.get("ipam")
        if isinstance(ipam, Mapping) and ipam.get("type") == HOST_LOCAL:
            load_host_local(doc, {})
    except CniError as err:
        located = from_error(CniError(err.code, err.msg.removeprefix("invalid network config: "), err.details))
        if located.path and located.path[0] in doc:
            return Finding(located.path, f"{located.message} (the plugin refuses this conf: CNI error {err.code})")
        return Finding((), f"the plugin refuses this conf: {err} (CNI error {err.code})")
    return None


def plugin_findings(doc: Mapping[str, Any]) -> list[Finding]:
    """Schema, unknown keys and semantic rules for one loxi-cni plugin object."""
    from schemas import load_schema

    schema_findings = _schema_findings(doc)
    flagged = {f.path for f in schema_findings}
    semantic = [f for f in semantic_findings(doc) if f.path not in flagged]  # one report per broken value
    findings = schema_findings + list(unknown_keys(doc, load_schema(SCHEMA_NAME), load_schema(SCHEMA_NAME))) + semantic
    if not any(f.severity == ERROR for f in findings):
        refused = _plugin_refuses(doc)
        if refused is not None:
            findings.append(refused)
    return findings


def _conflist(doc: Mapping[str, Any], report: _Reporter) -> None:
    for key in doc:
        if key not in CONFLIST_KEYS:
            hint = suggest(key, CONFLIST_KEYS)
            text = f"unknown conflist key {key!r}" + (f": did you mean {hint!r}?" if hint else "")
            report.add(Finding((key,), text, WARNING, at_key=True, strict_error=True))
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        report.add(Finding(("plugins",), "plugins must be a non-empty array of plugin objects"))
        return
    ours = []
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, Mapping):
            report.add(Finding(("plugins", index), "a plugin must be an object"))
        elif not isinstance(plugin.get("type"), str) or not plugin["type"]:
            report.add(Finding(("plugins", index, "type"), "every plugin needs a type"))
        elif plugin["type"] == PLUGIN_TYPE:
            ours.append(index)
    if not ours:
        report.add(Finding(("plugins",), f"no plugin of type {PLUGIN_TYPE!r}: nothing of loxi-cni to check", WARNING))
    list_level = frozenset({"name", "cniVersion"})
    for index in ours:
        effective = {**plugins[index], "name": doc.get("name"), "cniVersion": pick_version(doc)}
        for finding in plugin_findings(effective):
            report.add(finding, ("plugins", index), list_level)


def validate_text(text: str, source: str, strict: bool = False) -> FileReport:
    """All problems of one conf or conflist document."""
    try:  # what the plugin's decode accepts: no NaN, no Infinity, no float beyond float64, bounded depth
        doc = json.loads(text, parse_constant=refuse_json_constant, parse_float=finite_json_float)
        locator = Locator(text)
    except json.JSONDecodeError as err:
        return FileReport(source, (Problem(source, err.lineno, err.colno, "$", f"not valid JSON: {err.msg}"),))
    except (ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        return FileReport(source, (Problem(source, 1, 1, "$", f"not valid JSON: {reason}"),))
    report = _Reporter(source, locator, strict)
    if not isinstance(doc, dict):
        report.add(Finding((), "a CNI conf must be a JSON object"))
        return FileReport(source, tuple(report.problems))
    for member in locator.duplicates:
        report.add(Finding(member, f"duplicate key {member[-1]!r}: the last one wins", WARNING, at_key=True))
    if "plugins" in doc:
        _conflist(doc, report)
    elif doc.get("type") != PLUGIN_TYPE:
        report.add(Finding(("type",), f"type is {doc.get('type')!r}, not {PLUGIN_TYPE!r}: not checked", WARNING))
    else:
        for finding in plugin_findings(doc):
            report.add(finding)
    problems = sorted(report.problems, key=lambda p: (p.line, p.column, p.severity != ERROR, p.message))
    return FileReport(source, tuple(problems))


def _read(path: str) -> str:
    """A conf file's text: a regular file (never a FIFO or a device) of bounded size, or stdin."""
    if path == "-":
        import sys

        data = read_stream(getattr(sys.stdin, "buffer", sys.stdin))  # a text stream (tests) has no buffer
        return data if isinstance(data, str) else data.decode("utf-8")
    return read_regular(path).decode("utf-8")


def expand(paths: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """(file, problem) pairs: the files of each directory (not recursive, as libcni), sorted."""
    for path in paths:
        if path != "-" and os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(CONF_SUFFIXES))
            if not names:
                yield path, f"no {', '.join(CONF_SUFFIXES)} files in this directory"
            for name in names:
                yield os.path.join(path, name), None
        else:
            yield path, None


def validate_paths(paths: Iterable[str], strict: bool = False) -> list[FileReport]:
    reports = []
    for path, problem in expand(paths):
        source = "<stdin>" if path == "-" else path
        if problem is not None:
            reports.append(FileReport(source, (Problem(source, 0, 0, "$", problem),)))
            continue
        try:
            text = _read(path)
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            reports.append(FileReport(source, (Problem(source, 0, 0, "$", f"cannot read: {reason}"),)))
            continue
        reports.append(validate_text(text, source, strict))
    return reports
