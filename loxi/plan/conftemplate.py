"""`render`: one node's conflist from a jinja2 template, validated, then written atomically.

A runtime may read /etc/cni/net.d at any moment, so the file appears whole or
not at all: a temp file in the same directory (named so no runtime loads it:
libcni only reads .conf, .conflist and .json), fsync'd, renamed over the
target, then the directory fsync'd. A template that renders an invalid conf
writes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loxi
from loxi import atomicfile
from loxi.plan.errors import PlanError
from loxi.plan.validate import FileReport, validate_text

TEMPLATE_PATH_ENV = "LOXI_PLAN_TEMPLATES"  # extra template directories, colon-separated, searched first
# The repository's templates/ directory; installed next to the `loxi` package.
SHIPPED_DIR = Path(loxi.__file__).resolve().parent.parent / "templates"
SUFFIXES = (".conflist.j2", ".conf.j2", ".j2")
FILE_MODE = 0o644
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    path: Path
    description: str
    variables: tuple[str, ...]


def template_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(TEMPLATE_PATH_ENV, "").split(":") if p]
    return [*extra, SHIPPED_DIR]


def _name_of(path: Path) -> str:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def find_template(name: str) -> Path:
    """A path as given, else a shipped template by name (`loxilight` or `loxilight.conflist.j2`)."""
    given = Path(name)
    if given.is_file():
        return given
    if os.sep not in name:
        for directory in template_dirs():
            for candidate in (directory / name, *(directory / f"{name}{suffix}" for suffix in SUFFIXES)):
                if candidate.is_file():
                    return candidate
    known = ", ".join(info.name for info in list_templates()) or "none"
    raise PlanError(f"template {name!r} not found (shipped templates: {known}; see `loxi-plan render --list`)")


def _environment(directory: Path) -> Any:
    """Operator-supplied templates render in jinja2's sandbox."""
    from applier.templating import make_environment

    return make_environment(directory, sandboxed=True, filters={"tojson": _tojson})


def _tojson(value: Any) -> str:
    """Plain JSON (jinja's own escapes <, > and & for HTML), and an undefined variable is an error here too."""
    import jinja2

    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    return json.dumps(value)


def list_templates() -> list[TemplateInfo]:
    import jinja2.meta

    infos: dict[str, TemplateInfo] = {}
    for directory in template_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if not path.name.endswith(SUFFIXES) or _name_of(path) in infos:
                continue
            source = path.read_text(encoding="utf-8")
            comment = re.match(r"\s*\{#-?\s*(.*?)\s*-?#\}", source, re.S)
            description = comment.group(1).splitlines()[0] if comment else ""
            variables = jinja2.meta.find_undeclared_variables(_environment(directory).parse(source))
            infos[_name_of(path)] = TemplateInfo(_name_of(path), path, description, tuple(sorted(variables)))
    return list(infos.values())


def parse_var(text: str) -> tuple[str, Any]:
    """`KEY=VALUE`; a JSON number, true, false or null keeps its type, anything else is a string."""
    key, sep, value = text.partition("=")
    if not sep or not _VAR_NAME.fullmatch(key):
        raise PlanError(f"--var {text!r}: expected KEY=VALUE with KEY a template variable name")
    try:
        parsed = json.loads(value)
    except ValueError:
        return key, value
    return key, parsed if isinstance(parsed, int | float | bool) or parsed is None else value


def pod_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as err:
        raise PlanError(f"--node-pod-cidr {text!r}: {err}") from None


def render(template: Path, variables: dict[str, Any]) -> str:
    import jinja2

    env = _environment(template.parent)
    try:
        return env.get_template(template.name).render(variables)
    except jinja2.UndefinedError as err:
        raise PlanError(f"{template}: {err.message}: pass it with --var (see `loxi-plan render --list`)") from None
    except jinja2.TemplateError as err:
        where = f":{err.lineno}" if getattr(err, "lineno", None) else ""
        raise PlanError(f"{template}{where}: {err.message or type(err).__name__}") from None


def check_rendered(text: str, source: str) -> FileReport:
    return validate_text(text, source)


def write_atomic(path: str, text: str, mode: int = FILE_MODE) -> None:
    """Replace `path` with `text` so that readers see the old file or the new one, never a part."""
    atomicfile.write_atomic(path, text, mode)
