"""Parallel runs on one dataset (compare --parallel, DDP) share Ultralytics' labels/*.cache: its own writer
unlinks then rewrites in place, and a concurrent run died with FileNotFoundError (seen in CI). prepare_ultralytics
replaces it with an atomic write; many writers and readers at once must all succeed and read whole files."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np


def _hammer(path: str, n: int, q) -> None:
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.data import dataset as dataset_mod
    from ultralytics.data.utils import load_dataset_cache_file

    try:
        for i in range(n):
            dataset_mod.save_dataset_cache_file("", Path(path), {"hash": str(i), "labels": np.arange(1 << 19)}, "v")
            cache = load_dataset_cache_file(Path(path))
            assert cache["version"] == "v" and len(cache["labels"]) == 1 << 19
        q.put(None)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        q.put(repr(e))


def test_cache_writes_are_atomic_across_processes(tmp_path):
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    import ultralytics.data.dataset as dataset_mod
    import ultralytics.data.utils as data_utils

    assert dataset_mod.save_dataset_cache_file is data_utils.save_dataset_cache_file
    assert dataset_mod.save_dataset_cache_file.__module__ == "yolo_ft.utils.ultralytics_env"
    path = tmp_path / "labels" / "train.cache"
    path.parent.mkdir()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(path), 60, q)) for _ in range(4)]
    for p in procs:
        p.start()
    errors = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert errors == [None] * 4
    assert np.load(path, allow_pickle=True).item()["version"] == "v"
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.cache"]  # no temp files left behind
