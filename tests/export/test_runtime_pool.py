"""The runtime's shared pre-processing pool (yolo_ft/runtime/pool.py): ordered results, errors raised in
item order, tasks started before anyone waits, a working pool in a forked child, and Detector results that
do not depend on it."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from yolo_ft.runtime import Detector, pool


def test_parallel_map_keeps_order_and_raises_the_first_error_in_item_order():
    assert pool.parallel_map(lambda x: x * x, list(range(50))) == [x * x for x in range(50)]
    assert pool.parallel_map(str, []) == []

    def slow_fail(x: int) -> int:
        if x == 3:
            time.sleep(0.2)  # finishes last, still reported first: item 3 comes before item 7
            raise ValueError("three")
        if x == 7:
            raise KeyError("seven")
        return x

    with pytest.raises(ValueError, match="three"):
        pool.parallel_map(slow_fail, list(range(10)))


def test_submit_each_starts_work_before_it_is_awaited(monkeypatch):
    monkeypatch.setattr(pool, "workers", lambda: 2)
    started = threading.Event()
    results = pool.submit_each(lambda x: (started.set(), threading.current_thread().name)[1], [1])
    assert started.wait(10), "the task did not start until its result was asked for"
    assert results[0]().startswith("yolo_ft-preprocess")
    monkeypatch.setattr(pool, "workers", lambda: 1)  # one core: nothing runs early, everything inline
    ran = []
    lazy = pool.submit_each(ran.append, [1, 2])
    assert ran == []
    [r() for r in lazy]
    assert ran == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_pool_works_in_a_forked_child(monkeypatch):
    """A child forked after the pool started gets a copy without threads; it must make its own."""
    monkeypatch.setattr(pool, "workers", lambda: 2)
    assert pool.parallel_map(abs, [-1, -2]) == [1, 2]  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the pool ran the tasks; the alarm ends a hang
        signal.alarm(20)
        try:
            ok = pool.parallel_map(abs, [-3, -4, -5]) == [3, 4, 5]
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("cores", [1, 2])
def test_detector_batches_are_the_same_with_and_without_the_pool(fp32_export, kidney_sizes, monkeypatch, cores):
    """Several chunks (a batch-1 graph: each image is one chunk, the next decoded ahead), paths and arrays
    mixed, images of different sizes: every image gets exactly its own single-image result."""
    import cv2

    out, _, _ = fp32_export
    det = Detector(out, providers=["CPUExecutionProvider"])
    paths = list(kidney_sizes.values())
    alone = [det.predict(p, conf=0.01)[0] for p in paths]
    monkeypatch.setattr(pool, "workers", lambda: cores)
    mixed = [paths[0], cv2.imread(str(paths[1])), paths[2], paths[0]]
    got = det.predict(mixed, conf=0.01)
    for g, ref in zip(got, [alone[0], alone[1], alone[2], alone[0]]):
        np.testing.assert_array_equal(g.xyxy, ref.xyxy)
        np.testing.assert_array_equal(g.confidence, ref.confidence)
    assert [g.image for g in got] == [str(paths[0]), None, str(paths[2]), str(paths[0])]
    with pytest.raises(FileNotFoundError, match="missing.png"):  # a bad path in a later chunk still names itself
        det.predict([paths[0], paths[1], out.parent / "missing.png"])
