"""Warnings for files that can run code when loaded: PyTorch ``.pt`` checkpoints are pickles.

``torch.load(weights_only=False)`` — what Ultralytics uses for its checkpoints — executes whatever
the pickle says, so a ``best.pt`` downloaded from a forum is a program. yolo-ft cannot load
Ultralytics checkpoints without unpickling, so it warns, once per file, whenever a ``.pt`` comes
from outside what yolo-ft itself produced: the weights bundled with the package and the
``weights/`` folder of a run written by ``yolo-ft train`` (marked by its plan file).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("yolo_ft.security")

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets"
RUN_MARKER = "yolo_ft_plan.json"  # written by yolo-ft train at the start of every run (train.api.PLAN_FILE)
_warned: set[str] = set()


def is_own_checkpoint(path: str | os.PathLike) -> bool:
    """True for the bundled weights and for ``RUN/weights/*.pt`` of a run yolo-ft train wrote."""
    p = Path(path).resolve()
    if BUNDLED_DIR == p.parent or BUNDLED_DIR in p.parents:
        return True
    return p.parent.name == "weights" and (p.parent.parent / RUN_MARKER).is_file()


def warn_untrusted_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> bool:
    """Log a warning (once per file) before a ``.pt`` from outside yolo-ft's own runs is loaded.

    Returns True when it warned (or had warned before for this file).
    """
    p = Path(path)
    if p.suffix.lower() not in (".pt", ".pth") or is_own_checkpoint(p):
        return False
    key = str(p.resolve())
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "%s: loading this %s runs code stored in it (PyTorch checkpoints are pickles). It is not from a "
            "yolo-ft run or the bundled weights: load only .pt files from a source you trust.", p, what)
    return True
