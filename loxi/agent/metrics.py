"""loxi-agent's Prometheus metrics, with prometheus_client's own types and exposition.

Imported by the agent only: the plugin's cold path (loxi.plugin.entry, loxi.plugin.client,
in-process loxi.plugin.cni) never loads prometheus_client. Every metric is registered
in a registry of the agent's own (not the library's global one), so the
exposition carries exactly these and a test can make several agents in one
process. Pool gauges are read from the stores at scrape time, not kept up to
date on the hot path, so a call pays only for its counters and histograms.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A warm call takes ~1-10 ms, a cold fallback or a delegated IPAM up to seconds.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PHASE_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)

# Why a client had to run a call in-process: the agent said no, or gave up on it.
FALLBACK_NOT_ROOT = "not-root"
FALLBACK_NO_NETNS = "no-netns"
FALLBACK_NETNS_VIEW = "netns-view"
FALLBACK_TIMEOUT = "request-timeout"
FALLBACK_BROKEN = "broken-request"
FALLBACK_BUSY = "agent-busy"  # every worker busy and the queue full (loxi.agent.pool)
FALLBACK_REASONS = (
    FALLBACK_NOT_ROOT,
    FALLBACK_NO_NETNS,
    FALLBACK_NETNS_VIEW,
    FALLBACK_TIMEOUT,
    FALLBACK_BROKEN,
    FALLBACK_BUSY,
)


@dataclass(frozen=True)
class PoolUsage:
    network: str
    range_set: str  # the range set as text, e.g. "10.244.1.2-10.244.1.254"
    used: int
    free: int


class _PoolCollector(Collector):
    """`loxi_ipam_addresses{network, range_set, state}`, read from the stores of the networks served."""

    def __init__(self, pools: Callable[[], Iterable[PoolUsage]]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "loxi_ipam_addresses",
            "Addresses of each host-local range set of the networks loxi-agent served, in use and free.",
            labels=["network", "range_set", "state"],
        )
        try:
            pools = list(self._pools())
        except Exception:  # a store that cannot be read must not break the scrape
            pools = []
        for pool in pools:
            family.add_metric([pool.network, pool.range_set, "used"], pool.used)
            family.add_metric([pool.network, pool.range_set, "free"], pool.free)
        yield family


def _pyroute2_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyroute2")
    except Exception:
        return "unknown"


def _own_version() -> str:
    try:
        from importlib.metadata import version

        return version("loxi-cni")
    except Exception:
        return "unknown"


class AgentMetrics:
    """The agent's metrics and the few calls its handler makes on them.

    The labelled children a call touches are looked up once per label set and
    kept (`labels()` validates and locks on every lookup); a child is the
    library's own object, so the exposition is the same."""

    def __init__(self, pools: Callable[[], Iterable[PoolUsage]] = tuple) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter(
            "loxi_cni_calls",
            "CNI calls loxi-agent answered, by command and CNI result code.",
            ["command", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "loxi_cni_call_duration_seconds",
            "Wall time of a CNI call in loxi-agent, by command.",
            ["command"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.phase = Histogram(
            "loxi_cni_phase_duration_seconds",
            "Wall time of the engine's phases (ipam, plan: compile+observe+diff, apply), by command.",
            ["command", "phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("loxi_agent_requests_in_flight", "Requests loxi-agent is serving now.", registry=r)
        self.fallbacks = Counter(
            "loxi_agent_fallbacks",
            "Requests loxi-agent refused or gave up on, each of which the client then ran in-process, by reason.",
            ["reason"],
            registry=r,
        )
        self.leaked_found = Counter(
            "loxi_reconcile_leaked_found",
            "Leaked attachments the reconciler found (once each, when first seen), by network.",
            ["network"],
            registry=r,
        )
        self.reclaimed = Counter(
            "loxi_reconcile_reclaimed",
            "Leaked attachments the reconciler released, by network.",
            ["network"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "loxi_reconcile_errors",
            "Reclaims that failed (retried on the next pass), by network.",
            ["network"],
            registry=r,
        )
        self.start_time = Gauge("loxi_agent_start_time_seconds", "When loxi-agent started (Unix time).", registry=r)
        self.start_time.set(time.time())
        Info("loxi_agent_build", "loxi-agent's build.", registry=r).info(
            {"version": _own_version(), "python": platform.python_version(), "pyroute2": _pyroute2_version()}
        )
        r.register(_PoolCollector(pools))
        self._children: dict[tuple[object, ...], Any] = {}
        for reason in FALLBACK_REASONS:
            self._child(self.fallbacks, reason)  # exported at 0 from the start, so a rate() sees the first one

    def _child(self, metric: Any, *labels: str) -> Any:
        # A race between two first lookups of one label set is harmless: labels() returns the same child.
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def fallback(self, reason: str) -> None:
        self._child(self.fallbacks, reason).inc()

    def observe_call(self, command: str, code: str, seconds: float, phases: dict[str, float]) -> None:
        self._child(self.calls, command, code).inc()
        self._child(self.duration, command).observe(seconds)
        for name, value in phases.items():
            self._child(self.phase, command, name).observe(value)
