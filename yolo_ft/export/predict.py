"""``predict``: run a model (.onnx through yolo_ft.runtime, .pt through Ultralytics) on files, folders or
globs; write the detections JSON and optionally annotated images."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolo_ft.export.data import IMAGE_SUFFIXES
from yolo_ft.records import YoloFtError
from yolo_ft.utils.atomic import atomic_output_file, atomic_write_json


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """Files, directories (recursively, image suffixes only) and glob patterns -> sorted unique paths."""
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.is_file():
            out.append(p)
        elif any(ch in s for ch in "*?["):
            hits = sorted(Path(h) for h in glob.glob(s, recursive=True))
            hits = [h for h in hits if h.is_file() and h.suffix.lower() in IMAGE_SUFFIXES]
            if not hits:
                raise YoloFtError(f"{s}: pattern matches no images")
            out += hits
        else:
            raise YoloFtError(f"{s}: no such file or directory")
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    if not unique:
        raise YoloFtError("no images found in the given sources")
    return unique


def _predict_pt(model: Path, images: list[Path], conf: float, iou: float, max_det: int) -> list[list[dict]]:
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    from yolo_ft.utils.untrusted import warn_untrusted_checkpoint

    warn_untrusted_checkpoint(model)
    yolo = YOLO(str(model))
    out = []
    for img in images:
        r = yolo.predict(str(img), conf=conf, iou=iou, max_det=max_det, verbose=False)[0]
        xyxy, c, k = r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)
        out.append([{"xyxy": [float(v) for v in xyxy[i]], "confidence": float(c[i]), "class_id": int(k[i]),
                     "class_name": yolo.names[int(k[i])]} for i in range(len(c))])
    return out


def _predict_onnx(model: Path, images: list[Path], conf: float, iou: float, max_det: int) -> list[list[dict]]:
    from yolo_ft.runtime import Detector

    det = Detector(model)
    out = []
    for i in range(0, len(images), det.batch_size):
        out += [d.to_list() for d in det.predict(images[i : i + det.batch_size], conf=conf, iou=iou, max_det=max_det)]
    return out


def draw(image: Path, detections: list[dict], out: Path) -> None:
    """Boxes and 'name 0.87' labels with cv2's built-in Hershey font (nothing to download)."""
    import cv2

    img = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if img is None:
        raise YoloFtError(f"{image}: not a readable image")
    thick = max(1, round(sum(img.shape[:2]) / 600))
    for d in detections:
        k = d["class_id"]
        color = tuple(int(v) for v in np.random.default_rng(k).integers(64, 256, 3))
        x1, y1, x2, y2 = (round(v) for v in d["xyxy"])
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        label = f"{d['class_name']} {d['confidence']:.2f}"
        scale = thick / 3
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(thick - 1, 1))
        top = max(y1 - th - 4, 0)
        cv2.rectangle(img, (x1, top), (x1 + tw + 2, top + th + 4), color, -1)
        cv2.putText(img, label, (x1 + 1, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(thick - 1, 1), cv2.LINE_AA)
    with atomic_output_file(out) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise YoloFtError(f"{out}: could not write the annotated image")


def predict(
    model: str | Path,
    sources: Sequence[str],
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    out: str | Path | None = None,
    draw_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Detections for every image: [{"image", "detections": [{"xyxy", "confidence", "class_id", "class_name"}]}]."""
    model = Path(model)
    if not model.is_file():
        raise YoloFtError(f"{model}: model not found")
    if model.suffix not in (".onnx", ".pt"):
        raise YoloFtError(f"{model}: expected a .onnx or .pt model")
    images = expand_sources(sources)
    run = _predict_onnx if model.suffix == ".onnx" else _predict_pt
    try:
        dets = run(model, images, conf, iou, max_det)
    except ValueError as e:  # the runtime's "x.jpg: not a readable image"
        raise YoloFtError(str(e)) from e
    result = [{"image": str(p), "detections": d} for p, d in zip(images, dets, strict=True)]
    if out is not None:
        atomic_write_json(out, result)
    if draw_dir is not None:
        draw_dir = Path(draw_dir)
        names = [p.name for p in images]
        for p, d in zip(images, dets, strict=True):
            # Same file name from two folders: prefix the parent name so nothing is overwritten.
            name = p.name if names.count(p.name) == 1 else f"{p.parent.name}_{p.name}"
            draw(p, d, draw_dir / name)
    return result
