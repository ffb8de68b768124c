"""Pascal VOC XML (one file per image) → records.

Layouts: the VOC tree (``Annotations/`` + ``JPEGImages/`` [+ ``ImageSets/Main/{train,val,test}.txt``]),
also one level down (``VOCdevkit/VOC2007``); FiftyOne's export (``labels/`` + ``data/``); and flat
folders where each XML sits beside its image (LabelImg), or XMLs in SOURCE with ``--images DIR``.

Decisions:

* **Coordinates.** VOC stores 1-based pixel indices (the official devkit, and BCCD: ``xmin`` is
  never below 1 and ``xmax`` reaches the width). Like Ultralytics' VOC converter we subtract 1 from
  every coordinate: ``x1 = xmin - 1``, ``x2 = xmax - 1``. Box sizes stay ``xmax - xmin`` (so a
  ``xmin == xmax`` box stays zero-area and is reported by validation). Pass ``one_based=False``
  for files written 0-based (e.g. FiftyOne and CVAT exports) to use the numbers as they are.
* ``<filename>`` is looked up in the images folder; ``<path>`` is ignored (it usually holds a
  foreign absolute path such as ``/home/pi/...`` and must never be opened).
* ``difficult`` and ``truncated`` objects are kept as ordinary boxes.
* ``ImageSets/Main`` gives the split when present (``trainval`` counts as train when there is no
  ``train``/``val`` list). An image listed in two splits is a problem (it would leak).
* Images in the images folder without an XML are ``annotated=False`` (reported); an XML with no
  ``<object>`` is a negative.
* XML is parsed with defusedxml: entity declarations (billion laughs) are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import defusedxml.ElementTree as SafeET

from yolo_ft.prepare.readers._support import (
    IMAGE_SUFFIXES,
    describe_error,
    finite_float,
    positive_int,
    safe_file,
    walk_images,
)
from yolo_ft.records import Box, Problem, Record
from yolo_ft.utils.paths import UnsafePathError

NAME = "voc"

_ANN_DIRS = ("Annotations", "labels", "annotations")
_IMG_DIRS = ("JPEGImages", "data", "images")


def _is_voc_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"<annotation" in head and b"<annotations" not in head


def _roots(source: Path) -> list[tuple[Path, Path | None]]:
    """(annotation folder, VOC root or None) pairs found at or one level below ``source``."""
    out: list[tuple[Path, Path | None]] = []
    for base in [source, *sorted(p for p in source.iterdir() if p.is_dir())] if source.is_dir() else []:
        for name in _ANN_DIRS:
            d = base / name
            if d.is_dir() and any(_is_voc_xml(p) for p in _first_xmls(d)):
                out.append((d, base))
                break
        if out and base == source:
            return out
    if not out and source.is_dir() and any(_is_voc_xml(p) for p in _first_xmls(source)):
        out.append((source, None))
    return out


def _first_xmls(folder: Path, n: int = 3) -> list[Path]:
    found = []
    for p in sorted(folder.glob("*.xml")):
        found.append(p)
        if len(found) >= n:
            break
    return found


def sniff(source: Path) -> bool:
    source = Path(source)
    if source.is_file():
        return source.suffix.lower() == ".xml" and _is_voc_xml(source)
    return source.is_dir() and bool(_roots(source))


def read(
    source: Path, *, images: Path | None = None, masks: Path | None = None, one_based: bool = True, **options
) -> Iterator[Record | Problem]:
    """Stream one record per VOC XML, then ``annotated=False`` records for images with no XML."""
    source = Path(source)
    if source.is_file():
        pairs: list[tuple[Path, Path | None]] = [(source.parent, None)]
        only = [source]
    else:
        pairs = _roots(source) if source.is_dir() else []
        only = None
        if not pairs:
            yield Problem(str(source), "no Pascal VOC XML files found (expected Annotations/*.xml or *.xml)")
            return
    offset = 1.0 if one_based else 0.0
    for ann_dir, voc_root in pairs:
        img_dir = _image_dir(ann_dir, voc_root, images)
        splits, split_problems = _image_sets(voc_root) if voc_root is not None else ({}, [])
        yield from split_problems
        seen_images: set[Path] = set()
        problem_stems: set[str] = set()
        xmls = only if only is not None else sorted(ann_dir.glob("*.xml"))
        for xml in xmls:
            if xml.stem in splits and splits[xml.stem] is None:
                problem_stems.add(xml.stem)
                yield Problem(str(xml), "listed in more than one of ImageSets/Main train/val/test")
                continue
            item = _read_xml(xml, img_dir, splits.get(xml.stem), offset)
            if isinstance(item, Record):
                seen_images.add(item.image)
            else:
                problem_stems.add(xml.stem)
            yield item
        if only is None:
            # Images with no XML are reported; those whose XML is already a problem are not repeated.
            for img in walk_images(img_dir) if img_dir.is_dir() else ():
                if img not in seen_images and img.parent == img_dir and img.stem not in problem_stems:
                    yield Record(image=img, annotated=False, split=splits.get(img.stem) or None)


def _image_dir(ann_dir: Path, voc_root: Path | None, images: Path | None) -> Path:
    if images is not None:
        return Path(images).resolve()
    if voc_root is not None:
        for name in _IMG_DIRS:
            if (voc_root / name).is_dir():
                return (voc_root / name).resolve()
    return ann_dir.resolve()


def _image_sets(voc_root: Path) -> tuple[dict[str, str | None], list[Problem]]:
    """stem → split from ImageSets/Main; None marks a stem listed in several splits."""
    main = voc_root / "ImageSets" / "Main"
    lists = {s: main / f"{s}.txt" for s in ("train", "val", "test")}
    if not lists["train"].is_file() and not lists["val"].is_file() and (main / "trainval.txt").is_file():
        lists["train"] = main / "trainval.txt"
    out: dict[str, str | None] = {}
    problems: list[Problem] = []
    for split, path in lists.items():
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(str(path), f"cannot read split list: {describe_error(e)}"))
            continue
        for line in text.splitlines():
            stem = line.split()[0] if line.split() else ""
            if not stem:
                continue
            out[stem] = None if stem in out and out[stem] != split else split
    return out, problems


def _text(el, tag: str) -> str | None:
    child = el.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def _read_xml(xml: Path, img_dir: Path, split: str | None, offset: float) -> Record | Problem:
    file = str(xml)
    try:
        root = SafeET.parse(str(xml)).getroot()
    except Exception as e:  # noqa: BLE001 - malformed XML, entity bombs, unreadable: a Problem
        return Problem(file, f"invalid XML: {describe_error(e)}")
    try:
        if root.tag != "annotation":
            raise ValueError(f"root element is <{root.tag}>, expected <annotation>")
        filename = _text(root, "filename")
        image = _find_image(img_dir, xml, filename)
        width = height = None
        size = root.find("size")
        if size is not None:
            w, h = _text(size, "width"), _text(size, "height")
            # LabelImg writes 0 when it could not read the image: unknown, not invalid.
            width = positive_int(w, "size/width") if w not in (None, "", "0") else None
            height = positive_int(h, "size/height") if h not in (None, "", "0") else None
        boxes = []
        for i, obj in enumerate(root.iter("object"), 1):
            name = _text(obj, "name")
            if not name:
                raise ValueError(f"object {i} has no <name>")
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"object {i} ({name!r}) has no <bndbox>")
            coords = []
            for tag in ("xmin", "ymin", "xmax", "ymax"):
                raw = _text(bb, tag)
                if raw is None:
                    raise ValueError(f"object {i} ({name!r}) has no <{tag}>")
                coords.append(finite_float(raw, f"object {i} ({name!r}) <{tag}>") - offset)
            x1, y1, x2, y2 = coords
            if x2 < x1 or y2 < y1:
                raise ValueError(f"object {i} ({name!r}) has xmax < xmin or ymax < ymin")
            boxes.append(Box(x1, y1, x2, y2, name))
    except (ValueError, UnsafePathError, FileNotFoundError) as e:
        return Problem(file, str(e))
    except Exception as e:  # noqa: BLE001 - never a traceback for a data file
        return Problem(file, describe_error(e))
    return Record(image=image, boxes=boxes, width=width, height=height, source=xml, split=split, annotated=True)


def _find_image(img_dir: Path, xml: Path, filename: str | None) -> Path:
    """``<filename>`` inside the images folder; without it, the XML's stem with any image suffix."""
    if filename:
        path = safe_file(img_dir, filename, what="<filename>")
        if path is not None:
            return path
        # Some tools write <filename> without the extension, or with a folder in front.
        if Path(filename).suffix.lower() not in IMAGE_SUFFIXES:
            for cand in _by_stem(img_dir, filename):
                return cand
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base and base != filename:
            path = safe_file(img_dir, base, what="<filename>")
            if path is not None:
                return path
        raise FileNotFoundError(f"image {filename!r} named in <filename> not found in {img_dir}")
    for cand in _by_stem(img_dir, xml.stem):
        return cand
    raise FileNotFoundError(f"no <filename> and no image named {xml.stem}.* in {img_dir}")


def _by_stem(img_dir: Path, stem: str) -> Iterator[Path]:
    for suffix in sorted(IMAGE_SUFFIXES):
        for cand in (f"{stem}{suffix}", f"{stem}{suffix.upper()}"):
            try:
                path = safe_file(img_dir, cand, what="image name")
            except UnsafePathError:
                return
            if path is not None:
                yield path
