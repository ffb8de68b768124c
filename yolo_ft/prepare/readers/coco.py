"""COCO detection JSON → records.

One JSON file, or a folder of them (``train.json``/``val.json``, ``instances_val2017.json``): the
split is taken from the file name when it names one. ``bbox`` is ``[x, y, width, height]`` in pixels
and becomes xyxy; categories are looked up by id and keep their names exactly (no COCO-80 remap).

Decisions (documented because formats disagree):

* Images listed in ``images`` with no annotation are **negatives** (``annotated=True``, no boxes):
  COCO lists every image explicitly, so an unannotated entry is a statement, not an omission.
  Image files found beside the JSON but listed in no JSON are ``annotated=False`` (reported).
* ``iscrowd: 1`` annotations are **skipped by default**, as Ultralytics' own ``convert_coco`` does
  (a crowd box covers many objects and teaches the detector a wrong object size); a warning is
  logged with the count. ``crowd="keep"`` keeps them as ordinary boxes.
* ``file_name`` is resolved safely under ``--images``, else the JSON's folder, its ``data/``
  (FiftyOne) or ``images/`` sibling, ``../images`` or the official-COCO ``../train2017`` folder.
* Anything that makes an image's labels incomplete or ambiguous (unknown ``category_id``, bad
  ``bbox``, duplicate ids) is a Problem and the image is **not** yielded, so ``--skip-invalid``
  never writes an image with a silently missing box.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from yolo_ft.prepare.readers._support import (
    describe_error,
    find_image,
    finite_float,
    image_roots,
    positive_int,
    short,
    split_from_filename,
    walk_images,
)
from yolo_ft.records import Box, Problem, Record
from yolo_ft.utils.paths import UnsafePathError

NAME = "coco"
log = logging.getLogger(__name__)

_SNIFF_BYTES = 1 << 16


def _looks_like_coco(path: Path) -> bool:
    """Cheap check on the first 64 KiB: COCO has ``"images"``/``"annotations"``, LabelMe has ``"shapes"``."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    if b'"shapes"' in head and b'"imagePath"' in head:
        return False
    return head.lstrip()[:1] == b"{" and (b'"images"' in head or b'"annotations"' in head)


def _json_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    found: list[Path] = []
    for folder in (source, source / "annotations"):
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*.json") if p.is_file() and _looks_like_coco(p))
    return found


def sniff(source: Path) -> bool:
    source = Path(source)
    if source.is_file():
        return source.suffix.lower() == ".json" and _looks_like_coco(source)
    return source.is_dir() and bool(_json_files(source))


def read(
    source: Path, *, images: Path | None = None, masks: Path | None = None, crowd: str = "skip", **options
) -> Iterator[Record | Problem]:
    """Stream records from one COCO JSON file or a folder of them (see module docstring)."""
    source = Path(source)
    if crowd not in ("skip", "keep"):
        yield Problem(str(source), f"option crowd must be 'skip' or 'keep', got {crowd!r}")
        return
    files = _json_files(source)
    if not files:
        yield Problem(str(source), "no COCO JSON file found (a JSON with 'images' and 'annotations')")
        return
    referenced: set[Path] = set()
    roots_used: set[Path] = set()
    for jf in files:
        yield from _read_file(jf, images, crowd, referenced, roots_used)
    # Image files beside the annotations that no JSON lists: reported, not silently negatives.
    for root in sorted(roots_used):
        for img in walk_images(root):
            if img not in referenced:
                yield Record(image=img, annotated=False, source=None)


def _read_file(
    jf: Path, images: Path | None, crowd: str, referenced: set[Path], roots_used: set[Path]
) -> Iterator[Record | Problem]:
    file = str(jf)
    try:
        data = json.loads(jf.read_bytes())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        yield Problem(file, f"not valid JSON: {e}")
        return
    except Exception as e:  # noqa: BLE001 - deep nesting, unreadable file: a Problem, never a crash
        yield Problem(file, describe_error(e))
        return
    if not isinstance(data, dict):
        yield Problem(file, "top level is not a JSON object with 'images', 'annotations', 'categories'")
        return
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            yield Problem(file, f"missing or non-list {key!r}")
            return
    split = split_from_filename(jf.stem)

    categories: dict[object, str] = {}
    bad_categories: set[object] = set()
    for i, cat in enumerate(data["categories"]):
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if not _valid_id(cid) or not isinstance(name, str) or not name.strip():
            yield Problem(file, f"categories[{i}] needs an integer 'id' and a non-empty 'name': {short(cat)}")
            continue
        if cid in categories or cid in bad_categories:
            yield Problem(file, f"duplicate category id {cid!r} ({categories.get(cid)!r} and {name!r})")
            bad_categories.add(cid)
            categories.pop(cid, None)
            continue
        categories[cid] = name

    image_entries: dict[object, dict] = {}
    bad_images: dict[object, str] = {}
    for i, img in enumerate(data["images"]):
        iid = img.get("id") if isinstance(img, dict) else None
        if not _valid_id(iid) or not isinstance(img.get("file_name"), str):
            yield Problem(file, f"images[{i}] needs an integer 'id' and a string 'file_name': {short(img)}")
            continue
        if iid in image_entries or iid in bad_images:
            bad_images[iid] = f"duplicate image id {iid!r}"
            image_entries.pop(iid, None)
            continue
        image_entries[iid] = img

    by_image: dict[object, list[dict]] = {}
    ann_ids: dict[object, object] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            yield Problem(file, f"annotations[{i}] is not an object: {short(ann)}")
            continue
        iid = ann.get("image_id")
        aid = ann.get("id", f"#{i}")
        if not _valid_id(iid) or (iid not in image_entries and iid not in bad_images):
            yield Problem(file, f"annotation {short(aid)} references unknown image_id {short(iid)}")
            continue
        if _valid_id(aid):
            if aid in ann_ids:
                msg = f"duplicate annotation id {short(aid)}"
                bad_images.setdefault(iid, msg)
                bad_images.setdefault(ann_ids[aid], msg)
            ann_ids[aid] = iid
        by_image.setdefault(iid, []).append(ann)
    del ann_ids

    roots = image_roots(jf.parent, images, _official_coco_dirs(jf))
    crowd_skipped = 0
    for iid, img in image_entries.items():
        name = img["file_name"]
        if iid in bad_images:
            yield Problem(file, f"image {short(name)} (id {short(iid)}): {bad_images[iid]}")
            continue
        try:
            root, path = find_image(roots, name, what="file_name")
        except (UnsafePathError, FileNotFoundError) as e:
            yield Problem(file, f"image id {short(iid)}: {e}")
            continue
        referenced.add(path)
        roots_used.add(root)
        try:
            width = positive_int(img["width"], "width") if img.get("width") is not None else None
            height = positive_int(img["height"], "height") if img.get("height") is not None else None
            boxes, skipped = _boxes(by_image.get(iid, ()), categories, bad_categories, crowd)
        except ValueError as e:
            yield Problem(file, f"image {short(name)} (id {short(iid)}): {e}")
            continue
        crowd_skipped += skipped
        yield Record(image=path, boxes=boxes, width=width, height=height, source=jf, split=split, annotated=True)
    for iid, why in bad_images.items():
        if iid not in image_entries and why.startswith("duplicate image"):
            yield Problem(file, f"{why}: every image with this id is skipped")
    if crowd_skipped:
        log.warning("%s: skipped %d crowd annotation(s) (iscrowd=1); pass crowd='keep' to keep them", jf, crowd_skipped)


def _boxes(anns, categories: dict, bad_categories: set, crowd: str) -> tuple[list[Box], int]:
    """Boxes of one image; ValueError (naming the annotation) if any annotation is unusable."""
    boxes: list[Box] = []
    skipped = 0
    for ann in anns:
        aid = short(ann.get("id", "?"))
        cid = ann.get("category_id")
        if _valid_id(cid) and cid in bad_categories:
            raise ValueError(f"annotation {aid} uses duplicated category id {cid!r}")
        if not _valid_id(cid) or cid not in categories:
            raise ValueError(f"annotation {aid} has unknown category_id {short(cid)}")
        if ann.get("iscrowd") not in (None, 0, False, 1, True):
            raise ValueError(f"annotation {aid} has invalid iscrowd {short(ann.get('iscrowd'))}")
        if ann.get("iscrowd") in (1, True) and crowd == "skip":
            skipped += 1
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"annotation {aid} bbox must be [x, y, width, height], got {short(bbox)}")
        x, y, w, h = (finite_float(v, f"annotation {aid} bbox value") for v in bbox)
        if w < 0 or h < 0:
            raise ValueError(f"annotation {aid} bbox has negative width or height: {short(bbox)}")
        boxes.append(Box(x, y, x + w, y + h, categories[cid]))
    return boxes, skipped


def _valid_id(value: object) -> bool:
    """COCO ids are integers; some tools write strings. Bools, floats and null are not ids."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")


def _official_coco_dirs(jf: Path) -> list[Path]:
    """``annotations/instances_train2017.json`` → ``../train2017`` and ``../images``."""
    out = [jf.parent.parent / "images"]
    tail = jf.stem.rsplit("_", 1)[-1]
    if tail and tail != jf.stem:
        out += [jf.parent.parent / tail, jf.parent.parent / "images" / tail]
    return out


def class_names(source: Path, **options) -> list[str] | None:
    """Category names in id order across the JSON files (for a stable class order), or None."""
    names: dict[int, str] = {}
    for jf in _json_files(Path(source)):
        try:
            cats = json.loads(jf.read_bytes()).get("categories", [])
            for c in cats:
                if isinstance(c.get("id"), int) and isinstance(c.get("name"), str):
                    names.setdefault(c["id"], c["name"])
        except Exception:  # noqa: BLE001 - read() reports the problem
            continue
    ordered: list[str] = []
    for _, n in sorted(names.items()):
        if n not in ordered:
            ordered.append(n)
    return ordered or None
