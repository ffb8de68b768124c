"""Readers: one module per source format, each only parsing into :class:`~yolo_ft.records.Record`.

Every reader module exposes

* ``NAME: str`` — the ``--format`` value;
* ``sniff(source: Path) -> bool`` — cheap check whether ``source`` looks like this format;
* ``read(source: Path, *, images: Path | None = None, masks: Path | None = None, **options)
  -> Iterator[Record | Problem]`` — streams records (never loads the whole dataset) and yields a
  :class:`~yolo_ft.records.Problem` for anything it cannot parse, naming the file and the reason.

Readers never raise on bad input: a malformed file is a Problem, not a traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

# Order matters for detection: the most specific formats are sniffed first.
READER_MODULES: dict[str, str] = {
    "coco": "yolo_ft.prepare.readers.coco",
    "cvat": "yolo_ft.prepare.readers.cvat",
    "labelme": "yolo_ft.prepare.readers.labelme",
    "voc": "yolo_ft.prepare.readers.voc",
    "masks": "yolo_ft.prepare.readers.masks",
    "dicom": "yolo_ft.prepare.readers.dicom",
    "yolo": "yolo_ft.prepare.readers.yolo",
}


def get_reader(name: str) -> ModuleType:
    """Return the reader module for a ``--format`` name."""
    if name not in READER_MODULES:
        raise ValueError(f"unknown format {name!r}; choose one of: {', '.join(READER_MODULES)}")
    return importlib.import_module(READER_MODULES[name])


def detect_format(source: Path, *, masks: Path | None = None) -> str:
    """Guess the format of ``source`` (a file or folder); raises ValueError naming what was found."""
    if masks is not None:
        # DICOM slices take their masks as a sidecar; any other image folder is the masks format.
        return "dicom" if get_reader("dicom").sniff(Path(source)) else "masks"
    for name in READER_MODULES:
        try:
            module = get_reader(name)
        except ModuleNotFoundError:
            continue
        if module.sniff(Path(source)):
            return name
    raise ValueError(
        f"could not detect the annotation format of {source}; pass --format "
        f"({', '.join(READER_MODULES)})"
    )
