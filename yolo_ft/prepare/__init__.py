"""``prepare``: every labelled-image format into one clean, leak-free YOLO dataset.

``from yolo_ft.prepare import prepare`` is the library call behind ``yolo-ft prepare``. The import
is lazy so ``yolo_ft.prepare.cli`` (imported for ``--help``) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["prepare"]


def __getattr__(name: str) -> Any:
    if name == "prepare":
        from yolo_ft.prepare.api import prepare

        return prepare
    raise AttributeError(name)
