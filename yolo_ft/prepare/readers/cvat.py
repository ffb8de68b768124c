"""CVAT for images 1.1 XML → records.

``<annotations><meta>…<labels><label><name>`` declares the labels; each
``<image id name width height [subset]>`` holds ``<box label xtl ytl xbr ybr>``, ``<polygon points>``,
``<ellipse cx cy rx ry>`` and ``<mask left top width height>`` shapes. Coordinates are 0-based
continuous pixels, used as they are.

Decisions:

* Boxes → box; polygons (and polylines) → the bounding box of their points; ellipses → their
  bounding box; masks → their ``left/top/width/height`` extent. ``<points>``, ``<tag>`` and
  ``<skeleton>`` carry no extent and are ignored.
* An ``<image>`` with no shapes is a negative: CVAT lists every image of the task.
  Image files beside the XML that it does not list are ``annotated=False`` (reported).
* A shape whose label is not declared in ``<meta>`` is a problem (when ``<meta>`` declares labels).
* ``subset="Train"`` (project exports) sets the split.
* ``name`` is resolved safely under ``--images``, else the XML's folder, its ``images/`` (CVAT's
  own zip layout) or ``data/`` (FiftyOne's exporter) sibling.
* Parsed with defusedxml's streaming ``iterparse``: entity bombs are refused, memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import defusedxml.ElementTree as SafeET

from yolo_ft.prepare.readers._support import (
    canonical_split,
    describe_error,
    find_image,
    finite_float,
    image_roots,
    positive_int,
    walk_images,
)
from yolo_ft.records import Box, Problem, Record
from yolo_ft.utils.paths import UnsafePathError

NAME = "cvat"

_SHAPES = ("box", "polygon", "polyline", "ellipse", "mask")


def _is_cvat_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"<annotations" in head and (b"<version>" in head or b"<image " in head or b"<meta" in head)


def _xml_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.glob("*.xml") if p.is_file() and _is_cvat_xml(p)) if source.is_dir() else []


def sniff(source: Path) -> bool:
    source = Path(source)
    if source.is_file():
        return source.suffix.lower() == ".xml" and _is_cvat_xml(source)
    return bool(_xml_files(source))


def read(
    source: Path, *, images: Path | None = None, masks: Path | None = None, **options
) -> Iterator[Record | Problem]:
    """Stream one record per ``<image>`` of each CVAT XML in ``source``."""
    source = Path(source)
    files = _xml_files(source)
    if not files:
        yield Problem(str(source), "no CVAT for images XML found (an XML whose root is <annotations>)")
        return
    referenced: set[Path] = set()
    roots_used: set[Path] = set()
    for xml in files:
        yield from _read_file(xml, images, referenced, roots_used)
    for root in sorted(roots_used):
        for img in walk_images(root):
            if img not in referenced:
                yield Record(image=img, annotated=False, source=None)


def _read_file(
    xml: Path, images: Path | None, referenced: set[Path], roots_used: set[Path]
) -> Iterator[Record | Problem]:
    file = str(xml)
    roots = image_roots(xml.parent, images)
    labels: set[str] = set()
    in_meta = False
    try:
        for event, el in SafeET.iterparse(str(xml), events=("start", "end")):
            if event == "start":
                if el.tag == "meta":
                    in_meta = True
                continue
            if el.tag == "meta":
                in_meta = False
                for lab in el.iter("label"):
                    name = lab.findtext("name")
                    if name:
                        labels.add(name)
                el.clear()
            elif el.tag == "image" and not in_meta:
                item, root = _image(el, xml, roots, labels)
                el.clear()
                if isinstance(item, Record):
                    referenced.add(item.image)
                    roots_used.add(root)
                yield item
    except Exception as e:  # noqa: BLE001 - malformed XML, entity bombs: a Problem naming the file
        yield Problem(file, f"invalid XML: {describe_error(e)}")


def _image(el, xml: Path, roots: list[Path], labels: set[str]) -> tuple[Record | Problem, Path | None]:
    name = el.get("name")
    file = str(xml)
    where = f"<image id={el.get('id')!r} name={name!r}>"
    try:
        if not name:
            raise ValueError("has no name attribute")
        width = positive_int(el.get("width"), "width") if el.get("width") is not None else None
        height = positive_int(el.get("height"), "height") if el.get("height") is not None else None
        boxes: list[Box] = []
        for shape in el:
            if shape.tag not in _SHAPES:
                continue
            label = shape.get("label")
            if not label:
                raise ValueError(f"<{shape.tag}> has no label")
            if labels and label not in labels:
                raise ValueError(f"<{shape.tag}> label {label!r} is not declared in <meta> labels")
            boxes.append(Box(*_extent(shape), label))
        root, path = find_image(roots, name, what="image name")
    except (ValueError, UnsafePathError, FileNotFoundError) as e:
        return Problem(file, f"{where}: {e}"), None
    return Record(
        image=path, boxes=boxes, width=width, height=height, source=xml,
        split=canonical_split(el.get("subset")), annotated=True,
    ), root


def _extent(shape) -> tuple[float, float, float, float]:
    """xyxy extent of one CVAT shape; ValueError for missing, non-finite or inverted values."""
    tag = shape.tag
    if tag == "box":
        x1, y1, x2, y2 = (finite_float(shape.get(k), f"<box> {k}") for k in ("xtl", "ytl", "xbr", "ybr"))
    elif tag in ("polygon", "polyline"):
        raw = shape.get("points") or ""
        pts = [p.split(",") for p in raw.split(";") if p.strip()]
        if not pts or any(len(p) != 2 for p in pts):
            raise ValueError(f"<{tag}> points must be 'x,y;x,y;...', got {raw[:60]!r}")
        xs = [finite_float(p[0], f"<{tag}> x") for p in pts]
        ys = [finite_float(p[1], f"<{tag}> y") for p in pts]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    elif tag == "ellipse":
        cx, cy, rx, ry = (finite_float(shape.get(k), f"<ellipse> {k}") for k in ("cx", "cy", "rx", "ry"))
        if rx < 0 or ry < 0:
            raise ValueError("<ellipse> has a negative radius")
        x1, y1, x2, y2 = cx - rx, cy - ry, cx + rx, cy + ry
    else:  # mask
        left, top, w, h = (finite_float(shape.get(k), f"<mask> {k}") for k in ("left", "top", "width", "height"))
        if w < 0 or h < 0:
            raise ValueError("<mask> has a negative width or height")
        x1, y1, x2, y2 = left, top, left + w, top + h
    if x2 < x1 or y2 < y1:
        raise ValueError(f"<{tag}> has its bottom-right corner above or left of its top-left corner")
    return x1, y1, x2, y2


def class_names(source: Path, **options) -> list[str] | None:
    """Label names in the order ``<meta>`` declares them (for a stable class order), or None."""
    names: list[str] = []
    for xml in _xml_files(Path(source)):
        try:
            for _, el in SafeET.iterparse(str(xml), events=("end",)):
                if el.tag == "meta":
                    for lab in el.iter("label"):
                        n = lab.findtext("name")
                        if n and n not in names:
                            names.append(n)
                    break
        except Exception:  # noqa: BLE001 - read() reports the problem
            continue
    return names or None
