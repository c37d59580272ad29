"""loxi-agent's request workers: a fixed set of threads over a bounded queue.

A thread started per request costs the agent a clone, a new interpreter thread
state and its teardown on every pod, and leaves no bound on how many run at
once. Here `workers` threads are started with the agent and each serves one
request at a time, taken from a queue that holds at most `waiting` more;
`submit` never blocks, so the accept loop never waits for a worker: a request
over the bound is refused at once (loxi.agent.server), and its client runs the
call in-process, as it does whenever the agent refuses.

Sizing (the defaults, `--workers` and `--max-waiting`): the engine is Python
under one GIL, so more threads never add CPU, only overlap waits: netlink round
trips, a lease file's fsync, an attachment or IPAM store lock another call
holds, a delegated IPAM plugin that may take seconds. 8 cover those waits with
room to spare on any node (a burst of 10 ADDs on one network spends most of its
time queued on that network's IPAM lock anyway) without a GIL convoy of dozens of
runnable threads; 128 waiting is above the 110 pods a kubelet runs by default,
so only a pathological burst meets a refusal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

DEFAULT_WORKERS = 8
DEFAULT_WAITING = 128

Item = TypeVar("Item")


class WorkerPool(Generic[Item]):
    """`workers` daemon threads running `work(item)` for every item submitted, in order of arrival."""

    def __init__(self, work: Callable[[Item], None], workers: int, waiting: int, name: str = "worker") -> None:
        self._work = work
        if workers < 1 or waiting < 1:
            raise ValueError("a pool needs at least one worker and room for one waiting item")
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=waiting)
        self.threads = [threading.Thread(target=self._serve, name=f"{name} {i}", daemon=True) for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, item: Item) -> bool:
        """Queue `item` for the next free worker; False, at once, when `waiting` items already wait."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def waiting(self) -> int:
        return self._queue.qsize()

    def _serve(self) -> None:
        while True:
            self._work(self._queue.get())
