"""One shared thread pool for per-image pre-processing (decode, resize, blob filling).

cv2 releases the GIL in imread, resize, split and LUT, so the images of a batch can be prepared on several
cores at once while Python only dispatches. The pool is created on first use, sized to the machine (at
most 8 threads), shared by every Detector, and re-created in a forked child, whose copy would hold no
threads and would never run a task.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 8
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def workers() -> int:
    """Threads the pool uses: the cores this process may run on, at most MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _shared() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(workers(), thread_name_prefix="yolo_ft-preprocess")
            _pool_pid = os.getpid()
        return _pool


def submit_each(fn: Callable[[T], R], items: Sequence[T]) -> list[Callable[[], R]]:
    """Start ``fn(x)`` for every item on the shared pool now; each returned callable waits for its result
    (and re-raises its error). With one core nothing starts early: each callable runs ``fn`` when called.
    Every task is a leaf (it never waits on the pool), so callers on any thread cannot deadlock the pool."""
    if workers() < 2:
        return [partial(fn, x) for x in items]
    pool = _shared()
    return [pool.submit(fn, x).result for x in items]


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on the shared pool; results in the order of ``items``, and the first item
    (in that order) whose ``fn`` raised re-raises here, as the plain loop would. One item runs inline."""
    if len(items) < 2:
        return [fn(x) for x in items]
    return [result() for result in submit_each(fn, items)]
