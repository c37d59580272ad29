"""One driver per object kind: how it is observed, and how each change is applied and undone.

`applier.observe` builds a snapshot through the drivers' observers and
`applier.execute` runs a plan's steps through their `apply`; neither knows any
kind. Registry (`applier.drivers.base`):

- `driver_for(model_class) -> Driver`: the kind's driver, or `UnhandledChange`;
- `registered() -> {model_class: Driver}`: every registration;
- `@register` on a `Driver` subclass naming `kinds = (ModelClass, ...)`.

A driver: `observe(observer, obj) -> Observed | None`; `apply(ctx, step)`,
which calls `create(ctx, obj)`, `delete(ctx, obj)`, or for a MODIFY the setter
of each changed attribute (a method marked `@sets(attrs.MTU, ...)`), all of
them checked before the first runs; `feature`, the kernel feature an
EOPNOTSUPP on its steps means is missing. A new kind is a model module in
`compiler/model/` and a driver module here, imported below.
"""

from __future__ import annotations

from applier.drivers import addresses, links, netfilter, routes, sysctls, vlans
from applier.drivers.base import (
    FEATURE_8021Q,
    FEATURE_VLAN_FILTERING,
    Applying,
    Driver,
    UnhandledChange,
    driver_for,
    registered,
)

__all__ = [
    "FEATURE_8021Q",
    "FEATURE_VLAN_FILTERING",
    "Applying",
    "Driver",
    "UnhandledChange",
    "addresses",
    "driver_for",
    "links",
    "netfilter",
    "registered",
    "routes",
    "sysctls",
    "vlans",
]
