#!/usr/bin/env python3
"""Print this node's pod CIDR (Node.spec.podCIDR) read from the API with the pod's ServiceAccount.

Needs NODE_NAME (downward API: spec.nodeName) and RBAC `get nodes`. Standard library only.
Exit 1 with one line on stderr when the API cannot be read or the node has no pod CIDR yet.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def main() -> int:
    node = os.environ.get("NODE_NAME", "")
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not node or not host:
        print("node-pod-cidr: NODE_NAME and KUBERNETES_SERVICE_HOST must be set", file=sys.stderr)
        return 1
    with open(f"{SA}/token", encoding="utf-8") as handle:
        token = handle.read().strip()
    context = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    if ":" in host:
        host = f"[{host}]"
    request = urllib.request.Request(
        f"https://{host}:{port}/api/v1/nodes/{node}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            spec = json.load(response).get("spec", {})
    except OSError as err:
        print(f"node-pod-cidr: cannot read node {node}: {err}", file=sys.stderr)
        return 1
    cidr = spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), "")
    if not cidr:
        print(f"node-pod-cidr: node {node} has no spec.podCIDR (is --allocate-node-cidrs on?)", file=sys.stderr)
        return 1
    print(cidr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
