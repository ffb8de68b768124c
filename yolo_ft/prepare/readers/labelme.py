"""LabelMe JSON (one file per image, as LabelMe 3–5 write it) → records.

Each file has ``shapes`` (``label``, ``points``, ``shape_type``), ``imagePath``, ``imageHeight``,
``imageWidth`` and optionally the image itself as base64 ``imageData``.

Decisions:

* ``rectangle`` → its two corners (any order); ``circle`` (centre + a point on the rim) → its
  bounding square; every other shape (polygon, line, linestrip, point, mask) → the bounding box of
  its points (a lone point is zero-area and validation reports it).
* ``imagePath`` is resolved relative to the JSON's folder and must stay inside it (no ``..``, no
  absolute paths, no symlinks out). With ``--images DIR`` the image is also looked up there by its
  file name, which covers the common ``"../images/x.jpg"`` layout safely.
* If the image file is missing (or its path is refused) but ``imageData`` is embedded, the record
  renders those exact bytes (``render``), never re-encoded; the JSON is re-read on demand so the
  image does not sit in memory.
* A JSON with ``"shapes": []`` is a negative. Image files beside the JSONs without one are
  ``annotated=False`` (reported).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

from yolo_ft.prepare.readers._support import (
    describe_error,
    finite_float,
    positive_int,
    short,
    walk_images,
)
from yolo_ft.records import Box, Problem, Record
from yolo_ft.utils.paths import UnsafePathError, resolve_inside

NAME = "labelme"

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def _is_labelme(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b'"shapes"' in head and (b'"imagePath"' in head or b'"imageData"' in head)


def _json_files(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for p in sorted(source.rglob("*.json")):
        if p.is_file():
            yield p


def sniff(source: Path) -> bool:
    source = Path(source)
    if source.is_file():
        return source.suffix.lower() == ".json" and _is_labelme(source)
    if not source.is_dir():
        return False
    for i, p in enumerate(_json_files(source)):
        if _is_labelme(p):
            return True
        if i >= 5:
            break
    return False


def read(
    source: Path, *, images: Path | None = None, masks: Path | None = None, **options
) -> Iterator[Record | Problem]:
    """Stream one record per LabelMe JSON, then ``annotated=False`` records for unlabelled images."""
    source = Path(source)
    referenced: set[Path] = set()
    found_any = False
    for jf in _json_files(source):
        item = _read_file(jf, images, direct=source.is_file())
        if item is None:  # a JSON that is not LabelMe (e.g. a config file) in a folder scan
            continue
        found_any = True
        if isinstance(item, Record):
            referenced.add(item.image)
        yield item
    if not found_any:
        yield Problem(str(source), "no LabelMe JSON files found (JSON with 'shapes' and 'imagePath')")
        return
    if source.is_dir():
        for img in walk_images(source.resolve()):
            if img not in referenced:
                yield Record(image=img, annotated=False)


def _read_file(jf: Path, images: Path | None, direct: bool) -> Record | Problem | None:
    file = str(jf)
    try:
        data = json.loads(jf.read_bytes())
    except ValueError as e:
        return Problem(file, f"not valid JSON: {e}")
    except Exception as e:  # noqa: BLE001 - unreadable or nested too deep: a Problem, never a crash
        return Problem(file, describe_error(e))
    if not isinstance(data, dict) or "shapes" not in data:
        # In a folder, other JSON files (configs, COCO) are not ours; named directly, it is a problem.
        return Problem(file, "not a LabelMe file: no 'shapes' list") if direct else None
    try:
        shapes = data["shapes"]
        if not isinstance(shapes, list):
            raise ValueError(f"'shapes' must be a list, got {short(shapes)}")
        boxes = [_shape_box(i, s) for i, s in enumerate(shapes)]
        width = positive_int(data["imageWidth"], "imageWidth") if data.get("imageWidth") is not None else None
        height = positive_int(data["imageHeight"], "imageHeight") if data.get("imageHeight") is not None else None
        image, render, suffix = _locate_image(jf, data, images)
    except (ValueError, UnsafePathError, FileNotFoundError) as e:
        return Problem(file, str(e))
    except Exception as e:  # noqa: BLE001
        return Problem(file, describe_error(e))
    return Record(
        image=image, boxes=boxes, width=width, height=height, source=jf, annotated=True,
        render=render, render_suffix=suffix,
    )


def _shape_box(i: int, shape: object) -> Box:
    if not isinstance(shape, dict):
        raise ValueError(f"shapes[{i}] is not an object: {short(shape)}")
    label = shape.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"shapes[{i}] has no label")
    pts = shape.get("points")
    if not isinstance(pts, list) or not pts or not all(isinstance(p, list) and len(p) == 2 for p in pts):
        raise ValueError(f"shapes[{i}] ({label!r}) points must be a list of [x, y] pairs, got {short(pts)}")
    xs = [finite_float(p[0], f"shapes[{i}] ({label!r}) x") for p in pts]
    ys = [finite_float(p[1], f"shapes[{i}] ({label!r}) y") for p in pts]
    kind = shape.get("shape_type") or "polygon"
    if kind == "circle":
        if len(pts) != 2:
            raise ValueError(f"shapes[{i}] ({label!r}) circle needs 2 points (centre, rim)")
        r = ((xs[1] - xs[0]) ** 2 + (ys[1] - ys[0]) ** 2) ** 0.5
        return Box(xs[0] - r, ys[0] - r, xs[0] + r, ys[0] + r, label)
    if kind == "rectangle" and len(pts) != 2:
        raise ValueError(f"shapes[{i}] ({label!r}) rectangle needs 2 points, got {len(pts)}")
    return Box(min(xs), min(ys), max(xs), max(ys), label)


def _locate_image(jf: Path, data: dict, images: Path | None):
    """(image path, render or None, render suffix or None) — see the module docstring."""
    rel = data.get("imagePath")
    has_data = isinstance(data.get("imageData"), str) and bool(data.get("imageData"))
    refused: Exception | None = None
    if isinstance(rel, str) and rel:
        try:
            path = resolve_inside(jf.parent, rel, what="imagePath")
            if path.is_file():
                return path, None, None
        except UnsafePathError as e:
            refused = e
        if images is not None:
            try:
                path = resolve_inside(images, _basename(rel), what="imagePath file name")
                if path.is_file():
                    return path, None, None
            except UnsafePathError:
                pass
    elif not has_data:
        raise ValueError("no 'imagePath' and no 'imageData'")
    if has_data:
        suffix = _embedded_suffix(data["imageData"])
        name = _basename(rel) if isinstance(rel, str) and rel else jf.stem + suffix
        stem = Path(name).stem or jf.stem
        return jf.parent.resolve() / (stem + suffix), _EmbeddedImage(jf), suffix
    if refused is not None:
        raise refused
    raise FileNotFoundError(f"image {rel!r} not found beside the JSON and no 'imageData' embedded")


def _basename(rel: str) -> str:
    return PureWindowsPath(rel).name  # handles both / and \ separators


def _embedded_suffix(b64: str) -> str:
    """Check the embedded image decodes now (not at write time) and say what format it is."""
    try:
        head = _decode(b64)[:16]
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"'imageData' is not valid base64: {e}") from None
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            return suffix
    raise ValueError("'imageData' is not a PNG, JPEG, BMP or TIFF image")


def _decode(b64: str) -> bytes:
    return base64.b64decode("".join(b64.split()), validate=True)


class _EmbeddedImage:
    """Callable returning the exact image bytes embedded in a LabelMe JSON (re-read on demand)."""

    def __init__(self, json_path: Path):
        self.json_path = json_path

    def __call__(self) -> bytes:
        data = json.loads(self.json_path.read_bytes())
        return _decode(data["imageData"])

    def __repr__(self) -> str:
        return f"_EmbeddedImage({str(self.json_path)!r})"
