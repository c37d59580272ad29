"""The node's conflist: rendered from a template, then held to loxi-cni's schema and rules before install writes it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from loxi.install.base import PLUGIN_TYPE, InstallError


def render_conflist(template: str, node_pod_cidr: str | None, variables: Sequence[str] = ()) -> str:
    from loxi.plan import conftemplate as ct
    from loxi.plan.errors import PlanError

    try:
        path = ct.find_template(template)
        values: dict[str, Any] = dict(ct.parse_var(v) for v in variables)
        if node_pod_cidr is not None:
            values["node_pod_cidr"] = ct.pod_cidr(node_pod_cidr)
        text = ct.render(path, values)
    except PlanError as err:
        raise InstallError(str(err)) from None
    validate_conflist(text, str(path))
    return text


def validate_conflist(text: str, source: str = "<conflist>") -> dict[str, Any]:
    """Parses, is a conflist with a loxi-cni plugin, and that plugin passes loxi-cni's schema and rules."""
    from intent.config import validate_schema
    from intent.errors import CniError

    try:
        doc = json.loads(text)
    except ValueError as err:
        raise InstallError(f"{source}: the rendered conflist is not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
        raise InstallError(f"{source}: the rendered conf is not a conflist (no 'plugins' list)")
    if not doc.get("name"):
        raise InstallError(f"{source}: the rendered conflist has no 'name'")
    ours = [p for p in doc["plugins"] if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE]
    if not ours:
        raise InstallError(f"{source}: the rendered conflist has no plugin of type {PLUGIN_TYPE!r}")
    for plugin in ours:
        merged = {"cniVersion": doc.get("cniVersion", ""), "name": doc["name"], **plugin}
        try:
            validate_schema(merged)
        except CniError as err:
            raise InstallError(f"{source}: {err.msg}" + (f" ({err.details})" if err.details else "")) from None
    try:
        from loxi.plan.validate import validate_text
    except ImportError:  # the richer checks are optional here
        return doc
    report = validate_text(text, source)
    if not report.valid:
        first = next(p for p in report.problems if p.severity == "error") if report.problems else None
        raise InstallError(f"{source}: invalid conflist: {getattr(first, 'message', first)}")
    return doc
