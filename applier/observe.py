"""Read the live state of exactly the objects a desired state names.

Links are read by name, addresses and routes by link index and destination, so
the cost of an observation does not grow with the number of pods on the node.
The snapshot is plain data (`compiler.model.Observed`), the diff's only input.

The reads go through one pass's cache (`applier.observer.Observer`); what a
kind's attributes are is its driver's business (`applier.drivers`).
"""

from __future__ import annotations

from applier.drivers import driver_for
from applier.netns import Namespaces
from applier.observer import Observer
from compiler.graph import DesiredState
from compiler.model import Snapshot


def observe(namespaces: Namespaces, desired: DesiredState, observer: Observer | None = None) -> Snapshot:
    """Snapshot of every object the desired state names, present or absent.
    Pass an `observer` to read its cached links afterwards (nothing changed since)."""
    observer = observer or Observer(namespaces)
    snapshot: Snapshot = {}
    for obj in desired.objects() + list(desired.absent):
        snapshot[obj.key] = driver_for(type(obj)).observe(observer, obj)
    return snapshot
