"""Install only from a private environment: the distribution's top-level package names are generic.

loxi-cni installs the packages `intent`, `compiler`, `applier`, `schemas` and
`templates` (the design's folders) beside `loxi`. In an interpreter shared with
other software another distribution may ship a package of the same name, and
whichever comes first on `sys.path` wins for the plugin too. The launcher binds
loxi-cni to the interpreter `loxi-plan install` runs on, so install insists
that it is a private one: a virtualenv (`scripts/setup` makes `.venv`), or the
self-contained runtime the DaemonSet image carries (`deploy/make-runtime.py`
assembles it, with no site-packages of the base, and marks its prefix with
RUNTIME_ID; `deploy/loxi-node.sh` copies it to /opt/loxi/runtime-<id> and runs
install with it). `--allow-shared-interpreter` is the operator saying the
interpreter is loxi-cni's alone.
"""

from __future__ import annotations

import os
import sys

from loxi.install.base import InstallError

RUNTIME_MARKER = "RUNTIME_ID"  # deploy/make-runtime.py writes it at the runtime's prefix
ALLOW_FLAG = "--allow-shared-interpreter"


def private_environment() -> str | None:
    """What makes this interpreter private ("virtualenv", "loxi runtime"), None when it is the system's."""
    if sys.prefix != sys.base_prefix:
        return "virtualenv"
    if os.path.isfile(os.path.join(sys.prefix, RUNTIME_MARKER)):
        return "loxi runtime"
    return None


def require_private_environment(allow_shared: bool = False) -> None:
    """Refuse to bind the launcher to a shared interpreter, unless the operator says it is loxi-cni's."""
    if allow_shared or private_environment() is not None:
        return
    raise InstallError(
        f"{sys.executable} is not a private environment (sys.prefix {sys.prefix} is the base installation): "
        "loxi-cni's packages intent, compiler, applier, schemas and templates could be shadowed there by "
        "another distribution's; install from a virtualenv (scripts/setup makes .venv) or the image's runtime, "
        f"or pass {ALLOW_FLAG} if this interpreter serves loxi-cni alone"
    )
