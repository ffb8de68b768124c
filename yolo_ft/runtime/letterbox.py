"""Letterbox resize and box rescaling, bit-for-bit the arithmetic of Ultralytics' ``LetterBox`` and
``scale_boxes`` (same Python ``round`` calls, same ``-0.1``/``+0.1`` bias), so a box from the ONNX model
lands on the same original-image pixel as one from ``YOLO(best.pt).predict``.

Only numpy and cv2: this folder must run where torch is not installed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
_DIV255 = np.arange(256, dtype=np.float32) / np.float32(255.0)  # uint8 -> [0, 1], see to_blob
PAD_BLOB_VALUE = _DIV255[PAD_VALUE]  # the padding grey as the model input holds it
# Lookup tables per input dtype: the float16 one holds float16(x / 255 in float32), the values
# ``to_blob(..., np.float16)`` gives, so an fp16 model gets its input in one pass with no conversion.
_TABLES = {np.dtype(np.float32): _DIV255, np.dtype(np.float16): _DIV255.astype(np.float16)}


@dataclass(frozen=True)
class LetterboxParams:
    """How one image was placed in the model input: resized to ``new_unpad`` (w, h), then padded."""

    orig_hw: tuple[int, int]
    new_unpad: tuple[int, int]
    top: int
    bottom: int
    left: int
    right: int

    @property
    def padded_hw(self) -> tuple[int, int]:
        """(h, w) of the model input this image fills: the resized image plus its padding."""
        return self.new_unpad[1] + self.top + self.bottom, self.new_unpad[0] + self.left + self.right


def letterbox_params(
    orig_hw: tuple[int, int], new_hw: tuple[int, int], auto: bool = False, stride: int = 32
) -> LetterboxParams:
    """Ultralytics LetterBox(scaleup=True, center=True) geometry for one image.

    ``auto`` pads only up to a multiple of ``stride`` (the minimum rectangle Ultralytics uses for .pt and
    dynamic-shape models); otherwise the image is padded to exactly ``new_hw`` (fixed-shape graphs).
    """
    h0, w0 = orig_hw
    r = min(new_hw[0] / h0, new_hw[1] / w0)
    new_unpad = (max(round(w0 * r), 1), max(round(h0 * r), 1))
    dw, dh = new_hw[1] - new_unpad[0], new_hw[0] - new_unpad[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    return LetterboxParams(
        orig_hw=(h0, w0),
        new_unpad=new_unpad,
        top=round(dh - 0.1),
        bottom=round(dh + 0.1),
        left=round(dw - 0.1),
        right=round(dw + 0.1),
    )


def letterbox(
    img: np.ndarray, new_hw: tuple[int, int], auto: bool = False, stride: int = 32
) -> tuple[np.ndarray, LetterboxParams]:
    """Resize keeping aspect ratio (cv2 INTER_LINEAR) and pad with grey 114 to ``new_hw``."""
    p = letterbox_params(img.shape[:2], new_hw, auto, stride)
    if (img.shape[1], img.shape[0]) != p.new_unpad:
        img = cv2.resize(img, p.new_unpad, interpolation=cv2.INTER_LINEAR)
    if p.top or p.bottom or p.left or p.right:
        img = cv2.copyMakeBorder(
            img, p.top, p.bottom, p.left, p.right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
        )
    return img, p


def to_blob(images: list[np.ndarray], dtype: type = np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """BGR uint8 HWC images (same shape) -> contiguous RGB NCHW in [0, 1], one pass per image.

    ``out``: a float32 (N, 3, H, W) buffer to fill instead of a new array. A batch of eight 640x640 images
    is 39 MB; allocating it afresh costs a page fault per 4 KiB on every call (measured 13.8 ms vs 5.3 ms
    into a reused buffer, 2 cores).
    """
    n = len(images)
    h, w = images[0].shape[:2]
    if out is not None and out.shape == (n, 3, h, w) and out.dtype == np.float32 and out.flags.c_contiguous:
        blob = out
    else:
        blob = np.empty((n, 3, h, w), dtype=np.float32)
    for i, im in enumerate(images):
        # cv2.split makes contiguous planes (HWC->CHW); a 256-entry lookup (x / 255 for every uint8 value)
        # writes each straight into its RGB slot of the batch buffer. The table holds the quotients of
        # Ultralytics' ``.float().div_(255)``, so values stay bit-identical; cv2.LUT is ~15 % faster than
        # dividing and ~40 % faster than one strided transpose-divide.
        b, g, r = cv2.split(im)
        for c, plane in enumerate((r, g, b)):
            cv2.LUT(plane, _DIV255, dst=blob[i, c])
    return blob if dtype == np.float32 else blob.astype(dtype)


_scratch = threading.local()  # per-thread reusable arrays for letterbox_to_blob


def _reused(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's uint8 scratch array ``name`` of ``shape`` (reallocated only when the shape changes)."""
    arr = getattr(_scratch, name, None)
    if arr is None or arr.shape != shape:
        arr = np.empty(shape, np.uint8)
        setattr(_scratch, name, arr)
    return arr


def letterbox_to_blob(
    img: np.ndarray, new_hw: tuple[int, int], out: np.ndarray, auto: bool = False, stride: int = 32
) -> LetterboxParams:
    """Letterbox a BGR uint8 image straight into ``out``, a float32 or float16 (3, H, W) slot of the model input.

    Bit for bit ``to_blob([letterbox(img, ...)[0]])`` (same resize, same 114 padding, same x / 255 table),
    but the padded uint8 image is never built: the resized planes go through the lookup into the slot's
    inner rectangle and the border is filled with 114 / 255 directly. The resize output and the three
    planes reuse this thread's scratch arrays, because on the project's VM a fresh array costs a page fault
    per 4 KiB when first written. Measured (2 cores): 0.77 -> 0.51 ms for a 480x640 image, 1.8-2.0 ->
    1.2-1.6 ms for 1440x1920 (both to 640x640). ``out`` must have the shape ``padded_hw`` of the returned
    params (see :func:`letterbox_params`, which gives it before any pixel is touched).
    """
    p = letterbox_params(img.shape[:2], new_hw, auto, stride)
    table = _TABLES.get(out.dtype)
    if out.shape != (3, *p.padded_hw) or table is None:
        h, w = p.padded_hw
        raise ValueError(f"letterbox_to_blob: out is {out.dtype} {out.shape}, "
                         f"needs float32 or float16 (3, {h}, {w})")
    w, h = p.new_unpad
    if (img.shape[1], img.shape[0]) != p.new_unpad:
        img = cv2.resize(img, p.new_unpad, dst=_reused("resized", (h, w, 3)), interpolation=cv2.INTER_LINEAR)
    planes = cv2.split(img, [_reused(f"plane{c}", (h, w)) for c in range(3)])
    fill = table[PAD_VALUE]
    bottom, right = p.top + h, p.left + w
    for c, plane in enumerate(reversed(planes)):  # BGR planes -> RGB slots
        dst = out[c]
        dst[: p.top] = fill
        dst[bottom:] = fill
        dst[p.top : bottom, : p.left] = fill
        dst[p.top : bottom, right:] = fill
        inner = dst[p.top : bottom, p.left : right]  # row-strided view: cv2 writes through it
        got = cv2.LUT(plane, table, dst=inner)
        if got.ctypes.data != inner.ctypes.data:  # an OpenCV build that allocated instead
            inner[...] = got
    return p


def scale_boxes(boxes: np.ndarray, input_hw: tuple[int, int], orig_hw: tuple[int, int]) -> np.ndarray:
    """Map xyxy boxes from model-input pixels to original-image pixels, in place, then clip.

    Same formula as ``ultralytics.utils.ops.scale_boxes(ratio_pad=None)``: the gain is recomputed
    from the two shapes and each side is rounded the way LetterBox rounded it.
    """
    h0, w0 = orig_hw
    gain = min(input_hw[0] / h0, input_hw[1] / w0)
    new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
    gain_y, gain_x = new_h / h0, new_w / w0
    pad_x = round((input_hw[1] - new_w) / 2 - 0.1)
    pad_y = round((input_hw[0] - new_h) / 2 - 0.1)
    xs, ys = boxes[:, 0::2], boxes[:, 1::2]  # views (x1, x2) and (y1, y2): no fancy-index copies
    xs -= pad_x
    ys -= pad_y
    xs /= gain_x
    ys /= gain_y
    np.clip(xs, 0, w0, out=xs)
    np.clip(ys, 0, h0, out=ys)
    return boxes
