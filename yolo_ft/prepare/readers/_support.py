"""Small helpers the non-YOLO readers share: strict number parsing, split names, safe image lookup.

Everything here treats annotation content as untrusted: numbers must be finite real numbers,
paths are resolved with :func:`yolo_ft.utils.paths.resolve_inside` (no ``..``, no absolute paths,
no symlinks leaving the root), and XML goes through defusedxml (no entity expansion).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from yolo_ft.utils.paths import UnsafePathError, resolve_inside

# What Ultralytics can train on (its IMG_FORMATS), lower-case suffixes.
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
)

_SPLIT_ALIASES = {
    "train": "train", "training": "train", "trainval": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
_SPLIT_IN_NAME = re.compile(r"(?<![a-z])(trainval|training|train|validation|valid|val|dev|testing|test)(?![a-z])")


def finite_float(value: object, what: str = "value") -> float:
    """``value`` as a finite float; ValueError for bools, strings that are not numbers, NaN and inf.

    Annotation files written by hand or by buggy exporters carry ``"12px"``, ``null``, ``NaN`` and
    ``1e400``; each must become a reported problem, never a box at infinity.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is not a number: {value!r}")
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            raise ValueError(f"{what} is too large: {_short(value)}") from None
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise ValueError(f"{what} is not a number: {value!r}") from None
    else:
        raise ValueError(f"{what} is not a number: {_short(value)}")
    if not math.isfinite(out):
        raise ValueError(f"{what} is not finite: {value!r}")
    return out


def positive_int(value: object, what: str) -> int:
    """A strictly positive integer size (``640`` or ``"640"`` or ``640.0``); ValueError otherwise."""
    out = finite_float(value, what)
    if out <= 0 or out != int(out) or out > 1_000_000:
        raise ValueError(f"{what} must be a positive whole number of pixels: {value!r}")
    return int(out)


def canonical_split(name: object) -> str | None:
    """``"Train"``/``"validation"``/``"testing"`` → ``train``/``val``/``test``; anything else → None."""
    if not isinstance(name, str):
        return None
    return _SPLIT_ALIASES.get(name.strip().lower())


def split_from_filename(stem: str) -> str | None:
    """The split a file name states (``instances_train2017`` → train, ``val.json`` → val), else None."""
    m = _SPLIT_IN_NAME.search(stem.lower())
    return _SPLIT_ALIASES[m.group(1)] if m else None


def find_image(roots: Iterable[Path], relative: str, what: str = "image path") -> tuple[Path, Path]:
    """(root, file) for the first existing file ``root/relative`` over ``roots``, resolved safely.

    Raises UnsafePathError for ``..``/absolute/escaping paths (checked before touching the disk)
    and FileNotFoundError naming every folder looked in. ``roots`` must already be resolved.
    """
    looked: list[str] = []
    for root in roots:
        path = safe_file(root, relative, what=what)
        if path is not None:
            return root, path
        looked.append(str(root))
    raise FileNotFoundError(f"{what} {relative!r} not found (looked in: {', '.join(looked) or 'nowhere'})")


def safe_file(root: Path, relative: str, what: str = "path") -> Path | None:
    """``root/relative`` if it is a regular file inside the (already resolved) ``root``, else None.

    Same rules as :func:`yolo_ft.utils.paths.resolve_inside` (which gives the error for unsafe
    paths), but one ``lstat`` per path component instead of resolving the root on every call:
    readers do this once per image, so it decides how fast a 100k-image source is read.
    """
    norm = relative.replace("\\", "/") if isinstance(relative, str) else ""
    parts = norm.split("/")
    if not norm or "\x00" in norm or norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in parts:
        resolve_inside(root, relative, what=what)  # raises UnsafePathError with the reason
    path = str(root)
    st = None
    for part in parts:
        if part in ("", "."):
            continue
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except (OSError, ValueError):
            return None
        if stat.S_ISLNK(st.st_mode):  # a symlink on the way: the full check decides (raises if it leaves)
            full = resolve_inside(root, relative, what=what)
            return full if full.is_file() else None
    return Path(path) if st is not None and stat.S_ISREG(st.st_mode) else None


def walk_images(root: Path) -> Iterator[Path]:
    """Image files under ``root`` in a stable order, without following symlinked folders.

    Symlinked *files* that leave ``root`` are still yielded; the validator refuses them, so the
    user sees a problem rather than a silently missing image.
    """
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def image_roots(annotation_dir: Path, images: Path | None, extra: Iterable[Path] = ()) -> list[Path]:
    """Folders to look for images named in an annotation file, most explicit first.

    ``--images`` wins; otherwise the annotation file's folder, then ``data/`` (FiftyOne exports)
    and ``images/`` (CVAT exports) beside it.
    """
    if images is not None:
        return [Path(images).resolve()]
    out = [annotation_dir, annotation_dir / "data", annotation_dir / "images", *extra]
    seen: list[Path] = []
    for p in out:
        p = Path(p).resolve()
        if p.is_dir() and p not in seen:
            seen.append(p)
    return seen


def describe_error(exc: BaseException) -> str:
    """A one-line, user-facing description of why a file could not be parsed."""
    name = type(exc).__name__
    text = str(exc)
    if name in ("EntitiesForbidden", "DTDForbidden", "ExternalReferenceForbidden"):
        return f"XML declares entities or external references, which are refused for safety ({name})"
    if isinstance(exc, (UnsafePathError, FileNotFoundError, ValueError)) and text:
        return text
    if isinstance(exc, RecursionError):
        return "file is nested too deeply to parse"
    if isinstance(exc, MemoryError):
        return "file is too large to parse"
    return f"could not parse ({name}: {text[:200]})" if text else f"could not parse ({name})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def short(value: object) -> str:
    """``repr`` cut to 60 characters, for messages quoting untrusted content."""
    return _short(value)
