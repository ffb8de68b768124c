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


def foreign_label_caches(data_yaml: str | os.PathLike) -> list[Path]:
    """Ultralytics ``*.cache`` label caches in a dataset that ``yolo-ft prepare`` did not write.

    Ultralytics unpickles ``labels/<split>.cache`` (``np.load(allow_pickle=True)``) when it finds one, so a
    cache shipped with a downloaded dataset runs code at training time. Caches inside a prepared dataset
    (marked by its report.json) were written by Ultralytics on this machine and are not reported.
    """
    import json

    import yaml

    data_yaml = Path(data_yaml)
    roots = {data_yaml.parent.resolve()}
    try:
        cfg = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
        if isinstance(cfg, dict) and isinstance(cfg.get("path"), str):
            p = Path(cfg["path"])
            roots.add((p if p.is_absolute() else data_yaml.parent / p).resolve())
    except (OSError, yaml.YAMLError):
        pass
    found: list[Path] = []
    for root in sorted(roots):
        try:
            report = json.loads((root / "report.json").read_text(encoding="utf-8"))
            if isinstance(report, dict) and "format" in report and "images" in report:
                continue  # written by yolo-ft prepare
        except (OSError, ValueError):
            pass
        if root.is_dir():
            found += sorted(p for p in root.rglob("*.cache") if p.is_file())
    return found


def warn_foreign_label_caches(data_yaml: str | os.PathLike) -> list[Path]:
    """Log a warning naming every label cache Ultralytics would unpickle from a dataset yolo-ft did not make."""
    caches = foreign_label_caches(data_yaml)
    if caches:
        log.warning(
            "%s: Ultralytics will unpickle these label caches, which can run code: %s. Delete them unless you made "
            "them (they are rebuilt from the labels), or run yolo-ft prepare on the dataset first.",
            data_yaml, ", ".join(str(c) for c in caches[:5]) + (f" (+{len(caches) - 5} more)" if len(caches) > 5 else ""))
    return caches
