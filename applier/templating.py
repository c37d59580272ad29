"""The one jinja2 Environment factory: nft rulesets, loxi-plan's reports and conflist templates, the launcher.

Every template loxi renders wants the same settings: an undefined variable is
an error (StrictUndefined), no HTML escaping, the trailing newline kept, and
block tags that leave no blank lines behind (`trim`; the
nft rulesets keep the lines their templates write). Operator-supplied conflist
templates (`--template PATH`, LOXI_PLAN_TEMPLATES) are code from outside the
project, so they are rendered in jinja2's sandbox; the templates shipped in
the package are not. jinja2 is imported on call: only pods with netfilter rules and loxi-plan need it.
It lives in the applier, the lowest layer that renders text, so that every
layer above uses this one factory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def make_environment(
    directory: Path | None = None,
    *,
    sandboxed: bool = False,
    trim: bool = True,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> jinja2.Environment:
    """An Environment loading from `directory` (none: `from_string` only); `sandboxed` for foreign templates;
    `trim` strips block tags' lines."""
    import jinja2

    if sandboxed:
        from jinja2.sandbox import SandboxedEnvironment

        factory: type[jinja2.Environment] = SandboxedEnvironment
    else:
        factory = jinja2.Environment
    env = factory(
        loader=jinja2.FileSystemLoader(directory) if directory is not None else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim,
        lstrip_blocks=trim,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(filters or {})
    return env
