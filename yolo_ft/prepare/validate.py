"""Shared validation of every Record, whatever reader produced it.

Each image is read once: the bytes give a content hash (exact duplicates), PIL decodes them
(at reduced DCT scale for JPEG, which still reads the whole entropy-coded stream, so truncation
is caught) and the small greyscale result gives the perceptual hash for near-duplicate groups.
Nothing but a few ints per image is kept.

Per-record checks return :class:`Problem`s (the sample cannot be used) and notes (fixed or
worth knowing, e.g. a box clipped by under 1 px). Cross-record checks — duplicates, unknown
classes — run afterwards in :func:`find_duplicates` and :func:`check_classes`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from yolo_ft.utils.images import pil_open
from yolo_ft.prepare.phash import phash
from yolo_ft.records import Box, Problem, Record

# Ultralytics' IMG_FORMATS (8.4): anything else would be invisible to training.
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".jp2", ".avif", ".heic", ".heif"}
)
CLIP_TOLERANCE_PX = 1.0  # boxes past the edge by at most this much are clipped (and noted)
_NOTE_CLIP_PX = 1e-3  # below this, clipping is float round-off from normalised labels: not noted
_SWAP = frozenset({5, 6, 7, 8})


@dataclass
class ImageInfo:
    """What one read of an image tells us (no pixels kept)."""

    width: int | None = None  # as Ultralytics sees it (EXIF orientation applied)
    height: int | None = None
    raw_width: int | None = None  # as stored
    raw_height: int | None = None
    orientation: int = 1
    digest: str | None = None
    nbytes: int | None = None
    phash: int | None = None
    error: str | None = None


@dataclass
class Checked:
    """A record after validation: possibly fixed (clipped boxes, filled size), with its findings."""

    record: Record
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    digest: str | None = None
    nbytes: int | None = None
    phash: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_image(path: Path, *, decode: bool = True, want_hash: bool = True) -> ImageInfo:
    """Read ``path`` once: size, EXIF orientation, content digest, full decode, pHash.

    With neither ``decode`` nor ``want_hash`` only the header is read (fast label conversion); the
    digest is then left for :func:`find_duplicates` to compute for files whose sizes collide.
    """
    if not decode and not want_hash:
        from PIL import UnidentifiedImageError

        from yolo_ft.prepare.imagehead import SWAP_ORIENTATIONS, read_header

        info = ImageInfo()
        try:
            info.nbytes = os.stat(path).st_size
            if not info.nbytes:
                info.error = "image file is empty (0 bytes)"
                return info
            info.raw_width, info.raw_height, info.orientation = read_header(path)
        except UnidentifiedImageError:
            info.error = "not a readable image (unknown or corrupt format)"
            return info
        except OSError as e:
            info.error = f"cannot read image: {getattr(e, 'strerror', None) or e}"
            return info
        except Exception as e:  # noqa: BLE001 - PIL raises many types for garbage headers
            info.error = f"not a readable image ({e})"
            return info
        w, h = info.raw_width, info.raw_height
        info.width, info.height = (h, w) if info.orientation in SWAP_ORIENTATIONS else (w, h)
        return info
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return ImageInfo(error=f"cannot read image: {e.strerror or e}")
    return inspect_bytes(data, decode=decode, want_hash=want_hash, suffix=Path(path).suffix.lower())


def inspect_bytes(data: bytes, *, decode: bool = True, want_hash: bool = True, suffix: str = "") -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    info = ImageInfo(digest=_digest(data), nbytes=len(data))
    if not data:
        info.error = "image file is empty (0 bytes)"
        return info
    try:
        with pil_open(io.BytesIO(data)) as im:
            info.raw_width, info.raw_height = im.size
            try:
                info.orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
                info.orientation = 1
            if im.format == "TIFF" and info.orientation not in (0, 1):
                # OpenCV, which Ultralytics trains with, ignores a TIFF's orientation 2-4 and cannot read 5-8.
                info.error = (f"TIFF with EXIF orientation {info.orientation}: OpenCV (used for training) does not "
                              "apply it, so boxes would not match the pixels; save the image upright (orientation 1)")
                return info
            if im.format == "PNG" and b"IEND" not in data[-64:]:
                info.error = "image file is truncated (PNG has no IEND chunk)"
                return info
            if decode or want_hash:
                if im.format == "JPEG":
                    im.draft("L", (2 * 32, 2 * 32))  # DCT-scaled decode: whole stream read, 1/8 the work
                im.load()
                if want_hash:
                    info.phash = phash(_grey(im))
    except UnidentifiedImageError:
        info.error = "not a readable image (unknown or corrupt format)"
        return info
    except Image.DecompressionBombError as e:
        info.error = f"image too large to decode safely: {e}"
        return info
    except (OSError, ValueError, SyntaxError) as e:
        info.error = f"corrupt or truncated image: {e}"
        return info
    w, h = info.raw_width, info.raw_height
    if info.orientation in _SWAP:
        w, h = h, w
    info.width, info.height = w, h
    return info


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_HASH_MAX_SIDE = 1024  # the pHash looks at 32x32: bigger images are box-reduced first (memory, not accuracy)


def _grey(im) -> np.ndarray:
    # A 12000x12000 image would otherwise become a 576 MB float32 array (plus an L copy) per worker thread.
    factor = min(im.size) // _HASH_MAX_SIDE
    if factor > 1:
        try:
            im = im.reduce(factor)
        except (ValueError, NotImplementedError):  # modes PIL cannot reduce: hash at full size
            pass
    if im.mode in {"1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "PA", "RGBX"}:
        return np.asarray(im.convert("L"), dtype=np.float32)
    a = np.asarray(im, dtype=np.float32)  # 16-bit / float: pHash is scale-invariant, no windowing needed
    return a.mean(axis=-1) if a.ndim == 3 else a


# ------------------------------------------------------------------------------------- EXIF boxes
def exif_transform_boxes(boxes: Sequence[Box], orientation: int, w: int, h: int) -> list[Box]:
    """Map boxes from the stored-pixel frame to the EXIF-oriented frame Ultralytics trains on."""
    if orientation in (0, 1):
        return list(boxes)
    out = []
    for b in boxes:
        pts = [(b.x1, b.y1), (b.x2, b.y2)]
        tp = [_orient_point(x, y, orientation, w, h) for x, y in pts]
        xs, ys = [p[0] for p in tp], [p[1] for p in tp]
        out.append(Box(min(xs), min(ys), max(xs), max(ys), b.label))
    return out


def _orient_point(x: float, y: float, o: int, w: int, h: int) -> tuple[float, float]:
    if o == 2:
        return w - x, y
    if o == 3:
        return w - x, h - y
    if o == 4:
        return x, h - y
    if o == 5:
        return y, x
    if o == 6:  # rotate 90 CW
        return h - y, x
    if o == 7:
        return h - y, w - x
    if o == 8:  # rotate 90 CCW
        return y, w - x
    return x, y


# ------------------------------------------------------------------------------------------ names
def name_problem(path: Path) -> str | None:
    """A reason when a file name would break tools downstream (non-UTF-8, whitespace, control chars)."""
    name = path.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8; rename the file"
    if any(c.isspace() for c in name):
        return "file name contains whitespace; rename the file (spaces break Ultralytics label lookups and shell tools)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "file name contains control characters; rename the file"
    return None


def _safe_str(p: Path | str) -> str:
    return str(p).encode("utf-8", "backslashreplace").decode("utf-8")


# ------------------------------------------------------------------------------------------ boxes
def check_boxes(boxes: Sequence[Box], w: int, h: int) -> tuple[list[Box], list[str], list[str]]:
    """(clipped boxes, problem reasons, notes) for one image of size w×h."""
    kept: list[Box] = []
    problems: list[str] = []
    notes: list[str] = []
    seen: set[tuple] = set()
    for b in boxes:
        coords = (b.x1, b.y1, b.x2, b.y2)
        desc = f"box {b.label!r} ({', '.join(f'{v:.1f}' for v in coords)})"
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in coords):
            problems.append(f"{desc} has a NaN or infinite coordinate")
            continue
        if b.x2 <= b.x1 or b.y2 <= b.y1:
            problems.append(f"{desc} has zero or negative area")
            continue
        over = max(-b.x1, -b.y1, b.x2 - w, b.y2 - h)
        if over > CLIP_TOLERANCE_PX:
            problems.append(f"{desc} lies outside the {w}x{h} image by {over:.1f} px")
            continue
        if over > 0:
            b = Box(max(0.0, b.x1), max(0.0, b.y1), min(float(w), b.x2), min(float(h), b.y2), b.label)
            if over > _NOTE_CLIP_PX:
                notes.append(f"{desc} clipped to the image edge ({over:.2f} px outside)")
            if b.x2 <= b.x1 or b.y2 <= b.y1:
                problems.append(f"{desc} has zero area after clipping to the image")
                continue
        key = (round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3), b.label)
        if key in seen:
            notes.append(f"duplicate {desc} dropped")
            continue
        seen.add(key)
        kept.append(b)
    return kept, problems, notes


# ----------------------------------------------------------------------------------------- record
@functools.lru_cache(maxsize=4096)
def _real_dir(d: str) -> str:
    return os.path.realpath(d)


def _inside(img: Path, roots: Sequence[Path]) -> bool:
    """Like ``is_within`` for each root, with folder resolution cached (one lstat per image)."""
    s = str(img)
    if ".." in Path(s).parts:
        return False
    real = os.path.realpath(s) if os.path.islink(s) else os.path.join(_real_dir(os.path.dirname(os.path.abspath(s))),
                                                                          os.path.basename(s))
    for r in roots:
        rr = _real_dir(str(r))
        if real == rr or real.startswith(rr.rstrip(os.sep) + os.sep):
            return True
    return False


def check_record(
    record: Record,
    *,
    roots: Sequence[Path],
    decode: bool = True,
    near_dup: bool = True,
) -> Checked:
    """Validate one record; every finding names the file it is about."""
    img = Path(record.image)
    ann = _safe_str(record.source or record.image)
    out = Checked(record=record)

    def problem(file: str, reason: str) -> None:
        out.problems.append(Problem(file, reason))

    if not _inside(img, roots):
        problem(_safe_str(img), "path escapes the source root ('..', absolute path or symlink); not read")
        return out
    reason = name_problem(img)
    if reason:
        problem(_safe_str(img), reason)
    if record.render is None:
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            problem(_safe_str(img), f"image type {img.suffix or '(none)'} is not one Ultralytics can load")
            return out
        try:
            found = img.is_file()
        except OSError as e:  # e.g. a name too long for the file system
            problem(ann, f"cannot use image path {img.name[:80]!r}: {e.strerror or e}")
            return out
        if not found:
            problem(ann, f"annotation refers to a missing image {img.name}")
            return out
        info = inspect_image(img, decode=decode, want_hash=near_dup)
    else:
        try:
            data = record.render()
        except Exception as e:  # noqa: BLE001 - a reader's renderer failing is a problem with that file
            problem(_safe_str(img), f"cannot render image: {e}")
            return out
        info = inspect_bytes(data, decode=decode, want_hash=near_dup)
        try:
            raw = img.read_bytes()
            info.digest, info.nbytes = _digest(raw), len(raw)
        except OSError:
            pass
    out.digest, out.nbytes, out.phash = info.digest, info.nbytes, info.phash
    if info.error:
        problem(_safe_str(img), info.error)
        return out
    if not record.annotated:
        problem(_safe_str(img), "image has no annotation entry (no label/annotation for it; a negative "
                                "must be annotated explicitly, e.g. an empty YOLO .txt)")
        return out

    boxes = list(record.boxes)
    if record.exif_transposed or record.render is not None:
        expect_w, expect_h = info.width, info.height
    else:  # boxes are in stored pixels: compare with the stored size, then orient like Ultralytics
        expect_w, expect_h = info.raw_width, info.raw_height
    if record.width is not None and record.height is not None and (record.width, record.height) != (expect_w, expect_h):
        problem(ann, f"annotation says the image is {record.width}x{record.height} but {img.name} is "
                     f"{expect_w}x{expect_h}")
        return out
    if not record.exif_transposed and record.render is None and info.orientation not in (0, 1):
        boxes = exif_transform_boxes(boxes, info.orientation, expect_w, expect_h)
        out.notes.append(Problem(_safe_str(img), f"boxes rotated to match EXIF orientation {info.orientation}"))
    w, h = info.width, info.height
    kept, reasons, notes = check_boxes(boxes, w, h)
    for r in reasons:
        problem(ann, r)
    out.notes.extend(Problem(ann, n) for n in notes)
    out.record = replace(record, boxes=kept, width=w, height=h, exif_transposed=True)
    return out


# ----------------------------------------------------------------------------------- cross-record
def find_duplicates(samples: Sequence) -> None:
    """Mark later copies of byte-identical images as problems (the first by path is kept).

    ``samples`` are :class:`~yolo_ft.prepare.sample.Sample`s (``image``, ``digest``, ``nbytes``,
    ``add_problem``). Samples read header-only have no digest yet: only files whose byte sizes
    collide can be identical, so only those are read and hashed here.
    """
    by_size: dict[int, list] = {}
    for s in samples:
        if s.digest is None and s.nbytes and s.render is None:
            by_size.setdefault(s.nbytes, []).append(s)
    for group in by_size.values():
        if len(group) > 1:
            for s in group:
                try:
                    s.digest = bytes.fromhex(_digest(Path(s.image).read_bytes()))
                except OSError:
                    pass
    first: dict[bytes, str] = {}
    for s in sorted(samples, key=lambda s: s.image):
        if s.digest is None:
            continue
        other = first.setdefault(s.digest, s.image)
        if other != s.image:
            s.add_problem(Problem(_safe_str(s.image), f"duplicate file: identical content to {_safe_str(other)}"))


def check_classes(samples: Iterable, table, classes: Sequence[str]) -> None:
    """Every box label must be one of ``classes`` (``table`` maps a sample's label ids to names)."""
    allowed = {i for i, n in enumerate(table.names) if n in set(classes)}
    for s in samples:
        bad = set(s.labels) - allowed
        if bad:
            unknown = sorted(table.names[i] for i in bad)
            s.add_problem(Problem(_safe_str(s.source or s.image),
                                  f"unknown class(es) {', '.join(map(repr, unknown))}; known: {', '.join(classes)}"))
