"""Dynamic batching between the pipeline's threads: what the analyzer and the shared face stage read."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

#: tells the face and analyzer threads that no stream will send anything more
FINISH = object()


def gather(q: queue.Queue, batch: int, max_wait_ms: float, kind: type | tuple[type, ...],
           weight: Callable[[object], int] = lambda _: 1) -> Iterator[tuple[list, object]]:
    """Dynamic batches from ``q``: ``(items, None)`` once ``batch`` is reached (by ``weight``), the queue
    runs dry with the oldest item waited ``max_wait_ms``, or another kind of item comes; ``([], item)``
    for each item not of ``kind`` (a control item), after the batch before it — order is kept."""
    pending: list = []
    n, t_first = 0, 0.0
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, t_first + max_wait_ms / 1e3 - time.perf_counter())
        try:
            item = q.get(timeout=timeout) if timeout is None or timeout > 0 else q.get_nowait()
        except queue.Empty:
            item = None
        if isinstance(item, kind):
            if not pending:
                t_first = time.perf_counter()
            pending.append(item)
            n += weight(item)
            if n < batch and not q.empty():
                continue
            if n < batch and (time.perf_counter() - t_first) * 1e3 < max_wait_ms:
                continue
        if pending:
            yield pending, None
            pending, n = [], 0
        if item is not None and not isinstance(item, kind):
            yield [], item


__all__ = ["FINISH", "gather"]
