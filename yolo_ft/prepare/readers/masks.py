"""Segmentation masks → boxes, one box per connected component.

Images and masks are paired by file name (stem, relative to their folders; a mask stem may end in
``_mask``/``_label``/``_seg``/``_gt``). Folders: ``--images DIR --masks DIR``, or found under SOURCE
(or SOURCE/data) as ``image(s)/`` + ``label(s)/``/``mask(s)/`` — the KSSD2025 layout is
``data/image`` + ``data/label``. A first sub-folder named like a split (``train/``) sets the split.

Options (all also accepted by :func:`mask_boxes`):

* ``threshold`` (default 127): a binary mask's foreground is ``value > threshold``. Real masks are
  rarely clean — KSSD2025 masks hold noise values 0–8 and 247–255, and ``> 0`` would turn that noise
  into ~9x more "stones" — so the default splits the range in the middle.
* ``connectivity`` 4 or 8 (default 8): whether diagonal neighbours join one object.
* ``min_area`` (default 1 px): smaller components are dropped (a reader option, not a problem).
* ``mask_type`` ``binary`` | ``indexed`` (default: indexed when ``mask_classes`` is given).
  Indexed masks: every non-zero value is a class; ``mask_classes`` maps value → name
  (``{1: "stone"}`` or ``"1:stone,2:cyst"``), names default to the value (``"3"``); ``ignore_index``
  (default 255, the VOC "void" border) is skipped. Binary masks get the class ``mask_class``
  (default ``"object"``).

Masks are read with PIL so palette (``P``) masks give their indices, not palette colours. Boxes are
pixel-edge xyxy: a component covering columns 10..12 spans x 10 → 13, so a one-pixel component is a
1x1 box, not a zero-area one. An all-background mask is a negative; an image with no mask is
``annotated=False`` (reported); a mask with no image is a problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from yolo_ft.utils.images import pil_open
from yolo_ft.prepare.readers._support import IMAGE_SUFFIXES, canonical_split, describe_error
from yolo_ft.records import Box, Problem, Record

NAME = "masks"

_IMAGE_DIRS = ("image", "images", "img", "imgs", "JPEGImages")
_MASK_DIRS = ("label", "labels", "mask", "masks", "SegmentationClass", "SegmentationObject", "gt", "annotations")
_MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_label", "_seg", "_gt")


def _find_dirs(source: Path) -> tuple[Path, Path] | None:
    for base in (source, source / "data"):
        imgs = next((base / n for n in _IMAGE_DIRS if (base / n).is_dir()), None)
        msks = next((base / n for n in _MASK_DIRS if (base / n).is_dir() and _has_images(base / n)), None)
        if imgs is not None and msks is not None:
            return imgs, msks
    return None


def _has_images(folder: Path) -> bool:
    for i, p in enumerate(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return True
        if i > 50:
            break
    return False


def sniff(source: Path) -> bool:
    source = Path(source)
    return source.is_dir() and _find_dirs(source) is not None


def read(
    source: Path, *, images: Path | None = None, masks: Path | None = None, **options
) -> Iterator[Record | Problem]:
    """Pair images with masks by name and yield one record per image (see module docstring)."""
    source = Path(source)
    try:
        opts = parse_options(**options)
    except ValueError as e:
        yield Problem(str(source), f"invalid mask option: {e}")
        return
    if masks is not None:
        img_dir, mask_dir = Path(images) if images is not None else source, Path(masks)
    else:
        found = _find_dirs(source)
        if found is None:
            yield Problem(str(source), "no image and mask folders found (pass --images DIR --masks DIR)")
            return
        img_dir, mask_dir = (Path(images), found[1]) if images is not None else found
    for d, what in ((img_dir, "images"), (mask_dir, "masks")):
        if not d.is_dir():
            yield Problem(str(d), f"{what} folder does not exist")
            return
    image_index = _index(img_dir, exclude=mask_dir)
    paired: set[str] = set()
    for key, mask_path in _index(mask_dir).items():
        img_key = _match(key, image_index)
        if img_key is None:
            yield Problem(str(mask_path), f"mask has no image with the same name in {img_dir}")
            continue
        paired.add(img_key)
        image = image_index[img_key]
        try:
            arr = load_mask(mask_path)
            boxes = boxes_from_array(arr, **opts)
            _check_size(image, arr.shape)
        except ValueError as e:
            yield Problem(str(mask_path), str(e))
            continue
        except Exception as e:  # noqa: BLE001 - corrupt mask file: a Problem naming it
            yield Problem(str(mask_path), f"cannot read mask: {describe_error(e)}")
            continue
        yield Record(
            image=image, boxes=boxes, width=arr.shape[1], height=arr.shape[0], source=mask_path,
            split=_split_of(img_key), annotated=True,
        )
    for key, image in image_index.items():
        if key not in paired:
            yield Record(image=image, annotated=False, split=_split_of(key))


def _index(folder: Path, exclude: Path | None = None) -> dict[str, Path]:
    """relative-path-without-suffix → file, for the image files under ``folder`` (sorted).

    ``exclude`` (the mask folder when it sits inside the image folder) is left out.
    """
    out: dict[str, Path] = {}
    root = folder.resolve()
    skip = exclude.resolve() if exclude is not None else None
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            out.setdefault(p.relative_to(root).with_suffix("").as_posix(), p)
    return out


def _match(mask_key: str, image_index: dict[str, Path]) -> str | None:
    if mask_key in image_index:
        return mask_key
    for suffix in _MASK_SUFFIXES:
        if mask_key.endswith(suffix) and mask_key[: -len(suffix)] in image_index:
            return mask_key[: -len(suffix)]
    return None


def _split_of(key: str) -> str | None:
    return canonical_split(key.split("/", 1)[0]) if "/" in key else None


def _check_size(image: Path, shape: tuple[int, ...]) -> None:

    try:
        with pil_open(image) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - an unreadable image is reported by validation
        return
    if (w, h) != (shape[1], shape[0]):
        raise ValueError(f"mask is {shape[1]}x{shape[0]} but its image {image.name} is {w}x{h}")


def parse_options(
    threshold: float = 127, connectivity: int = 8, min_area: int = 1, mask_type: str | None = None,
    mask_classes: dict | str | None = None, mask_class: str = "object", ignore_index: int | None = 255,
    **_ignored,
) -> dict:
    """Validate and normalise mask options (CLI strings accepted); ValueError on a bad value."""
    try:
        threshold = float(threshold)
        connectivity = int(connectivity)
        min_area = int(min_area)
    except (TypeError, ValueError):
        raise ValueError("threshold, connectivity and min_area must be numbers") from None
    if not np.isfinite(threshold):  # NaN/inf would make every mask silently empty (or all foreground)
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1, got {min_area}")
    if isinstance(mask_classes, str):
        parsed = {}
        for item in mask_classes.split(","):
            k, sep, v = item.partition(":")
            if not sep or not k.strip().isdigit() or not v.strip():
                raise ValueError(f"mask_classes must look like '1:stone,2:cyst', got {mask_classes!r}")
            parsed[int(k)] = v.strip()
        mask_classes = parsed
    if mask_type is None:
        mask_type = "indexed" if mask_classes else "binary"
    if mask_type not in ("binary", "indexed"):
        raise ValueError(f"mask_type must be 'binary' or 'indexed', got {mask_type!r}")
    return {
        "threshold": threshold, "connectivity": connectivity, "min_area": min_area, "mask_type": mask_type,
        "mask_classes": {int(k): str(v) for k, v in (mask_classes or {}).items()},
        "mask_class": str(mask_class), "ignore_index": None if ignore_index is None else int(ignore_index),
    }


def load_mask(path: Path) -> np.ndarray:
    """A 2-D array of mask values: palette indices for ``P`` masks, grey levels otherwise."""

    with pil_open(path) as im:
        im.load()
        if im.mode == "1":
            im = im.convert("L")
        elif im.mode in ("LA", "PA"):
            im = im.getchannel(0)
        arr = np.asarray(im)
    if arr.ndim == 3:
        grey = arr.shape[2] < 3 or (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))
        if not grey:
            raise ValueError("colour (RGB) masks are not supported: save them as palette (P) or greyscale")
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"mask must be a 2-D image, got shape {arr.shape}")
    return arr


def boxes_from_array(
    arr: np.ndarray, *, threshold: float = 127, connectivity: int = 8, min_area: int = 1,
    mask_type: str = "binary", mask_classes: dict[int, str] | None = None, mask_class: str = "object",
    ignore_index: int | None = 255,
) -> list[Box]:
    """One box per connected component (see module docstring for the options)."""
    if mask_type == "binary":
        return _components(arr > threshold, connectivity, min_area, mask_class)
    boxes: list[Box] = []
    mask_classes = mask_classes or {}
    for value in np.unique(arr):
        v = int(value)
        if v == 0 or (v == ignore_index and v not in mask_classes):
            continue
        if mask_classes and v not in mask_classes:
            raise ValueError(f"mask value {v} is not in mask_classes {sorted(mask_classes)}")
        boxes += _components(arr == value, connectivity, min_area, mask_classes.get(v, str(v)))
    return boxes


def _components(fg: np.ndarray, connectivity: int, min_area: int, label: str) -> list[Box]:
    """Components of a boolean image, labelled only inside the rectangle that holds any foreground.

    Lesion masks are mostly background; cropping first makes labelling ~10x cheaper.
    """
    import cv2

    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    if rows.size == 0:
        return []
    y0, x0 = int(rows[0]), int(cols[0])
    crop = fg[y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1].astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=connectivity)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= min_area:
            out.append(Box(float(x0 + x), float(y0 + y), float(x0 + x + w), float(y0 + y + h), label))
    return out


def mask_boxes(path: Path, **options) -> tuple[list[Box], tuple[int, int]]:
    """Boxes and (width, height) of one mask file; used by the DICOM reader for mask sidecars."""
    arr = load_mask(path)
    return boxes_from_array(arr, **parse_options(**options)), (arr.shape[1], arr.shape[0])


def class_names(source: Path, **options) -> list[str] | None:
    """Class order the options declare: ``mask_classes`` by index, or the one binary ``mask_class``."""
    try:
        opts = parse_options(**options)
    except ValueError:
        return None  # read() reports the bad option
    if opts["mask_type"] == "indexed":
        return [opts["mask_classes"][k] for k in sorted(opts["mask_classes"])] or None
    return [opts["mask_class"]]
