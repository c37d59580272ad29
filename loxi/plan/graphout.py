"""`graph`: the desired-state graph the compiler builds for one attachment, as DOT or JSON.

Both are written in a stable order (creation order for nodes, then edges by
their ends' positions), so the output can be diffed and kept as a golden file.
"""

from __future__ import annotations

import json
from typing import Any

from compiler.graph import DesiredState
from compiler.model import NODE_NS, ObjectKey


def _q(text: str) -> str:
    """A DOT double-quoted string; a newline becomes DOT's `\\n` line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _edges(desired: DesiredState) -> list[tuple[ObjectKey, ObjectKey, str]]:
    position = {obj.key: i for i, obj in enumerate(desired.order())}
    edges = [(a, b, data.get("reason", "")) for a, b, data in desired.graph.edges(data=True)]
    return sorted(edges, key=lambda e: (position[e[0]], position[e[1]]))


def _ns_label(ns: str, pod_netns: str) -> str:
    if ns == NODE_NS:
        return "node namespace"
    return f"pod namespace {pod_netns}" if pod_netns else "pod namespace"


def to_dot(desired: DesiredState, title: str, pod_netns: str = "") -> str:
    objects = desired.order()
    namespaces = sorted({obj.ns for obj in objects}, key=lambda ns: (ns != NODE_NS, ns))
    lines = [
        f"digraph {_q(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace"];',
        '  edge [fontname="monospace", fontsize=10];',
    ]
    for ns in namespaces:
        lines.append(f"  subgraph {_q('cluster_' + ns)} {{")
        lines.append(f"    label={_q(_ns_label(ns, pod_netns))};")
        for obj in objects:
            if obj.ns == ns:
                lines.append(f"    {_q(str(obj.key))} [label={_q(obj.kind + chr(10) + obj.name)}];")
        lines.append("  }")
    for src, dst, reason in _edges(desired):
        lines.append(f"  {_q(str(src))} -> {_q(str(dst))} [label={_q(reason)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_data(desired: DesiredState, graph_attrs: dict[str, Any]) -> dict[str, Any]:
    """networkx's node-link layout (directed, nodes, edges), with typed fields instead of opaque objects."""
    return {
        "directed": True,
        "multigraph": False,
        "graph": graph_attrs,
        "nodes": [
            {
                "id": str(obj.key),
                "ns": obj.ns,
                "kind": obj.kind,
                "name": obj.name,
                "description": obj.describe(),
                "shared": bool(obj.shared),
                "attrs": obj.desired(),
            }
            for obj in desired.order()
        ],
        "edges": [{"source": str(a), "target": str(b), "reason": reason} for a, b, reason in _edges(desired)],
    }


def to_json(desired: DesiredState, graph_attrs: dict[str, Any]) -> str:
    return json.dumps(to_data(desired, graph_attrs), indent=2) + "\n"
