"""DICOM (``.dcm``) and 16-bit CT slices (16-bit PNG/TIFF) → windowed 8-bit PNG records.

Detectors train on 8-bit images, and a CT slice's useful contrast lives in a narrow Hounsfield
range, so each slice is windowed: stored values → HU with ``RescaleSlope``/``RescaleIntercept``
(pydicom reads the pixels), then ``window`` = ``"center,width"`` in HU or a preset name
(:data:`WINDOW_PRESETS`). Default: the file's own ``WindowCenter``/``WindowWidth`` (first value),
else the slice's min–max. ``u8 = clip(round((HU - (center - width/2)) / width * 255), 0, 255)``;
``MONOCHROME1`` slices are inverted after windowing. Records carry ``render`` (a picklable callable
returning PNG bytes) and ``render_suffix=".png"``; ``image`` is the source slice. The group id is
the DICOM ``PatientID`` (else ``StudyInstanceUID``), so splits can keep a patient together.

16-bit PNG/TIFF slices have no header: their values are mapped to HU with the options
``rescale_slope`` (default 1) and ``rescale_intercept`` (default 0), and windowed the same way
(default min–max). 8-bit images in the folder are passed through unchanged (no ``render``).

Annotations come from sidecars, paired by file stem:

* a YOLO label file next to the slice (``slice_001.dcm`` → ``slice_001.txt``: ``class cx cy w h``
  normalised, or a YOLO polygon); class names from the ``names`` option (``"stone,cyst"`` or a
  list/dict), else ``classes.txt`` beside the slice or in SOURCE, else the id as text;
* and/or a mask in ``--masks DIR`` (same stem; read with the ``masks`` reader's options).

An empty ``.txt`` or an all-background mask is a negative; a slice with neither sidecar is
``annotated=False`` (reported), so an unlabelled export is never silently taken as all-negative.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from yolo_ft.utils.images import pil_open
from yolo_ft.prepare.readers import masks as mask_reader
from yolo_ft.prepare.readers._support import describe_error, finite_float
from yolo_ft.records import Box, Problem, Record

NAME = "dicom"

#: (center, width) in HU. ``kidney-stone`` keeps stones (≥ ~200 HU, often > 1000) bright without
#: saturating them while soft tissue (~30 HU) stays visible around them.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "kidney-stone": (300.0, 1500.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
}

_DICOM_SUFFIXES = (".dcm", ".dicom")
_RASTER_SUFFIXES = (".png", ".tif", ".tiff")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_16bit(path: Path) -> bool:
    if path.suffix.lower() not in _RASTER_SUFFIXES:
        return False

    try:
        with pil_open(path) as im:
            return im.mode in _SIXTEEN_BIT_MODES
    except Exception:  # noqa: BLE001 - unreadable images are the validator's to report
        return False


def _slices(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if _is_dicom(p) or p.suffix.lower() in _RASTER_SUFFIXES:
                yield p


def sniff(source: Path) -> bool:
    source = Path(source)
    if source.is_file():
        return _is_dicom(source)
    if not source.is_dir():
        return False
    for i, p in enumerate(_slices(source)):
        if _is_dicom(p):
            return True
        if i > 20:
            break
    return False


def parse_window(window: object) -> tuple[float, float] | None:
    """``"40,400"``, ``(40, 400)``, a preset name, or None/"auto" (use the file's own window)."""
    if window is None or window == "auto":
        return None
    if isinstance(window, str):
        key = window.strip().lower()
        if key in WINDOW_PRESETS:
            return WINDOW_PRESETS[key]
        if key in ("minmax", "min-max"):
            return (float("nan"), float("nan"))
        parts = key.split(",")
    elif isinstance(window, (tuple, list)):
        parts = list(window)
    else:
        parts = []
    if len(parts) != 2:
        raise ValueError(
            f"window must be 'center,width' in HU or one of {', '.join(WINDOW_PRESETS)}, got {window!r}"
        )
    center, width = finite_float(parts[0], "window center"), finite_float(parts[1], "window width")
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return center, width


def apply_window(hu: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """HU → uint8 with a linear window; ``None`` or NaN window → the slice's min–max."""
    hu = hu.astype(np.float64, copy=False)
    if window is None or not np.isfinite(window[0]):
        lo, hi = float(hu.min()), float(hu.max())
        center, width = (lo + hi) / 2.0, max(hi - lo, 1e-6)
    else:
        center, width = window
    out = np.rint((hu - (center - width / 2.0)) / width * 255.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _first(value: object) -> float | None:
    """A DICOM (possibly multi-valued) number, or None when absent or not finite."""
    if value is None:
        return None
    if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        value = value[0] if len(value) else None
    try:
        return finite_float(float(value), "value")
    except (TypeError, ValueError):
        return None


class WindowedSlice:
    """Picklable ``render`` callable: re-reads one slice and returns windowed 8-bit PNG bytes."""

    def __init__(self, path: Path, window: tuple[float, float] | None, slope: float = 1.0, intercept: float = 0.0):
        self.path, self.window, self.slope, self.intercept = Path(path), window, slope, intercept

    def pixels(self) -> np.ndarray:
        """The windowed uint8 array (also used by read() to check the pixels decode)."""
        if _is_dicom(self.path):
            import pydicom

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(self.path)
            if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
                raise ValueError("only single-channel (greyscale) DICOM slices are supported")
            if int(ds.get("NumberOfFrames", 1) or 1) != 1:
                raise ValueError("multi-frame DICOM files are not supported; export one file per slice")
            raw = ds.pixel_array
            slope = _first(ds.get("RescaleSlope")) or 1.0
            intercept = _first(ds.get("RescaleIntercept")) or 0.0
            hu = raw.astype(np.float64) * slope + intercept
            window = self.window
            if window is None:
                c, w = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
                window = (c, w) if c is not None and w is not None and w > 0 else None
            out = apply_window(hu, window)
            if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
                out = 255 - out
        else:

            with pil_open(self.path) as im:
                raw = np.asarray(im)
            hu = raw.astype(np.float64) * self.slope + self.intercept
            out = apply_window(hu, self.window)
        if out.ndim != 2:
            raise ValueError(f"expected a 2-D slice, got pixel array of shape {out.shape}")
        return out

    def __call__(self) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".png", self.pixels())
        if not ok:
            raise ValueError(f"could not encode {self.path} as PNG")
        return buf.tobytes()

    def __repr__(self) -> str:
        return f"WindowedSlice({str(self.path)!r}, window={self.window})"


def read(
    source: Path,
    *,
    images: Path | None = None,
    masks: Path | None = None,
    window: object = None,
    names: object = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    **options,
) -> Iterator[Record | Problem]:
    """Stream one record per slice (see module docstring)."""
    source = Path(images) if images is not None else Path(source)  # --images: where the slices are
    try:
        win = parse_window(window)
        slope = finite_float(rescale_slope, "rescale_slope")
        intercept = finite_float(rescale_intercept, "rescale_intercept")
        mask_opts = mask_reader.parse_options(**options) if masks is not None else None
        class_names = _class_names(names, source)
    except (ValueError, OSError) as e:
        yield Problem(str(source), f"invalid option: {describe_error(e)}")
        return
    mask_index = mask_reader._index(Path(masks)) if masks is not None else {}
    skip = Path(masks).resolve() if masks is not None else None
    found = False
    for path in _slices(source):
        if skip is not None and (skip == path.resolve().parent or skip in path.resolve().parents):
            continue
        found = True
        yield _read_slice(path, win, slope, intercept, class_names, mask_index, mask_opts, source)
    if not found:
        yield Problem(str(source), "no DICOM (.dcm) or 16-bit PNG/TIFF slices found")


def _class_names(names: object, source: Path) -> dict[int, str] | None:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    if isinstance(names, (list, tuple)):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    classes_txt = (source if source.is_dir() else source.parent) / "classes.txt"
    if classes_txt.is_file():
        lines = [ln.strip() for ln in classes_txt.read_text(encoding="utf-8").splitlines()]
        return {i: n for i, n in enumerate(ln for ln in lines if ln)}
    return None


def _read_slice(path, win, slope, intercept, class_names, mask_index, mask_opts, source) -> Record | Problem:
    file = str(path)
    group = None
    try:
        if _is_dicom(path):
            import pydicom

            from pydicom.errors import InvalidDicomError

            try:
                with warnings.catch_warnings():  # pydicom warns on odd values; problems are reported below
                    warnings.simplefilter("ignore")
                    header = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                raise ValueError("not a DICOM file (no 'DICM' file header)") from None
            if "Rows" not in header or "Columns" not in header:
                raise ValueError("DICOM file holds no image (no Rows/Columns): a report, DICOMDIR or truncated file?")
            width, height = int(header.Columns), int(header.Rows)
            group = str(header.get("PatientID") or header.get("StudyInstanceUID") or "") or None
            render = WindowedSlice(path, win)
        elif _is_16bit(path):
            render = WindowedSlice(path, win, slope, intercept)
            width = height = None
        else:  # an ordinary 8-bit image: linked as it is
            render = None
            width = height = None
        if render is not None:
            px = render.pixels()  # decode once now so a corrupt slice is reported, not a crash at write time
            height, width = px.shape
            del px
        boxes, annotated = _sidecar_boxes(path, width, height, class_names, mask_index, mask_opts, source)
    except (ValueError, FileNotFoundError) as e:
        return Problem(file, str(e))
    except Exception as e:  # noqa: BLE001 - corrupt DICOM, undecodable pixels: a Problem naming the file
        return Problem(file, f"cannot read slice: {describe_error(e)}")
    return Record(
        image=path, boxes=boxes, width=width, height=height, source=path, group=group, annotated=annotated,
        render=render, render_suffix=".png" if render is not None else None,
    )


def _sidecar_boxes(path, width, height, class_names, mask_index, mask_opts, source) -> tuple[list[Box], bool]:
    boxes: list[Box] = []
    annotated = False
    txt = path.with_suffix(".txt")
    if txt.is_file():
        annotated = True
        if width is None or height is None:

            with pil_open(path) as im:
                width, height = im.size
        boxes += _yolo_boxes(txt, width, height, class_names)
    if mask_index:
        try:
            key = path.resolve().relative_to(source.resolve()).with_suffix("").as_posix()
        except ValueError:
            key = path.stem
        mask = mask_index.get(key) or mask_index.get(path.stem)
        if mask is None:
            mask = next((mask_index[k + s] for k in (key, path.stem) for s in mask_reader._MASK_SUFFIXES
                         if k + s in mask_index), None)
        if mask is not None:
            annotated = True
            mboxes, (mw, mh) = mask_reader.mask_boxes(mask, **mask_opts)
            if width is not None and (mw, mh) != (width, height):
                raise ValueError(f"mask {mask.name} is {mw}x{mh} but the slice is {width}x{height}")
            boxes += mboxes
    return boxes, annotated


def _yolo_boxes(txt: Path, width: int, height: int, class_names: dict[int, str] | None) -> list[Box]:
    try:
        text = txt.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"label file {txt.name} is not UTF-8 text") from None
    boxes = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{txt.name} line {n}"
        cls = finite_float(parts[0], f"{where} class")
        if cls < 0 or cls != int(cls):
            raise ValueError(f"{where}: class must be a non-negative integer, got {parts[0]!r}")
        vals = [finite_float(v, f"{where} coordinate") for v in parts[1:]]
        if len(vals) == 4:
            cx, cy, w, h = vals
            if w < 0 or h < 0:
                raise ValueError(f"{where}: negative width or height")
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            xs, ys = vals[0::2], vals[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        else:
            raise ValueError(f"{where}: expected 'class cx cy w h' or a polygon, got {len(vals)} numbers")
        cid = int(cls)
        if class_names is not None and cid not in class_names:
            raise ValueError(f"{where}: class id {cid} is not in the class names {sorted(class_names)}")
        label = class_names[cid] if class_names is not None else str(cid)
        boxes.append(Box(x1 * width, y1 * height, x2 * width, y2 * height, label))
    return boxes


def class_names(source: Path, *, names: object = None, **options) -> list[str] | None:
    """Class order from ``names`` or ``classes.txt`` (YOLO sidecars), else None (order by name)."""
    try:
        table = _class_names(names, Path(source))
    except (ValueError, OSError):
        return None  # read() reports it
    return [table[k] for k in sorted(table)] if table else None
