"""best.pt -> checked model.onnx (fp32 / fp16 / gated int8) with provenance; plus ``predict``.

``from yolo_ft.export import export`` is the library call behind ``yolo-ft export``
(``yolo_ft.export.predict.predict`` is the one behind ``yolo-ft predict``). The import is lazy so
``import yolo_ft.export`` (and ``--help``) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export"]


def __getattr__(name: str) -> Any:
    if name == "export":
        from yolo_ft.export.onnx import export

        return export
    raise AttributeError(name)
