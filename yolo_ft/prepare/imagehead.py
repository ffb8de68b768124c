"""Image size and EXIF orientation from the file header, without decoding pixels.

Reading sizes is the hot path of label conversion (YOLO labels are normalised, every other
stage wants pixels). PIL's JPEG opener parses every marker segment (~120 µs); scanning the
markers for SOF and the EXIF orientation tag directly takes ~15 µs. Anything that is not a
well-formed JPEG falls back to PIL, so results match ``PIL.Image.open(...).size``.
"""

from __future__ import annotations

import struct
from pathlib import Path

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
SWAP_ORIENTATIONS = frozenset({5, 6, 7, 8})


def _exif_orientation(seg: bytes) -> int:
    """Orientation tag (0x0112) of IFD0 in an APP1 'Exif' segment; 1 when absent or malformed."""
    if not seg.startswith(b"Exif\x00\x00") or len(seg) < 14:
        return 1
    tiff = seg[6:]
    order = tiff[:2]
    if order == b"II":
        e = "<"
    elif order == b"MM":
        e = ">"
    else:
        return 1
    try:
        (ifd,) = struct.unpack_from(e + "I", tiff, 4)
        (n,) = struct.unpack_from(e + "H", tiff, ifd)
        for k in range(n):
            tag, typ, _count = struct.unpack_from(e + "HHI", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112:
                if typ == 3:  # SHORT
                    return struct.unpack_from(e + "H", tiff, ifd + 2 + 12 * k + 8)[0]
                return 1
    except struct.error:
        return 1
    return 1


def jpeg_header(f) -> tuple[int, int, int] | None:
    """(width, height, orientation) of a JPEG file object at offset 0, or None if not parseable."""
    if f.read(2) != b"\xff\xd8":
        return None
    orientation = 1
    while True:
        b = f.read(1)
        while b == b"\xff":  # fill bytes
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9 or marker == 0xDA:  # EOI / start of scan before any SOF
            return None
        ln = f.read(2)
        if len(ln) < 2:
            return None
        (length,) = struct.unpack(">H", ln)
        if length < 2:
            return None
        if marker in _SOF:
            seg = f.read(5)
            if len(seg) < 5:
                return None
            h, w = struct.unpack(">HH", seg[1:5])
            if w == 0 or h == 0:
                return None
            return w, h, orientation
        if marker == 0xE1 and orientation == 1:
            seg = f.read(length - 2)
            if seg.startswith(b"Exif\x00\x00"):
                orientation = _exif_orientation(seg)
            continue
        f.seek(length - 2, 1)


def read_header(path: str | Path) -> tuple[int, int, int]:
    """(stored width, stored height, EXIF orientation); raises on unreadable files like PIL does."""
    with open(path, "rb") as f:
        head = jpeg_header(f)
        if head is not None:
            return head
        f.seek(0)
        from yolo_ft.utils.images import pil_open

        with pil_open(f) as im:
            w, h = im.size
            try:
                o = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
                o = 1
            return int(w), int(h), o


def display_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as Ultralytics sees the image (EXIF orientation applied, like ``exif_size``)."""
    w, h, o = read_header(path)
    return (h, w) if o in SWAP_ORIENTATIONS else (w, h)
