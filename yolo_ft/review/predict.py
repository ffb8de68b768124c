"""Run a model over image files in batches and return boxes in one plain form, whatever the model format.

A ``.pt`` checkpoint goes through Ultralytics (what training produced); a ``.onnx`` model goes through
:class:`yolo_ft.runtime.Detector` (exactly what will ship). Both yield :class:`ImagePredictions` with
pixel xyxy boxes *and* the decoded image size, so converting to FiftyOne's relative boxes never
guesses a size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from yolo_ft.utils.hashing import sha256_file
from yolo_ft.records import YoloFtError


@dataclass(frozen=True)
class ImagePredictions:
    """Detections of one image: ``xyxy`` (N×4 pixels), ``confidence`` (N), ``class_id`` (N), names, size."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: list[str]
    width: int
    height: int


class Predictor(Protocol):
    names: dict[int, str]

    def predict(self, images: Sequence[Path]) -> list[ImagePredictions]: ...


def model_tag(model: str | Path) -> str:
    """``<stem>_<8 hex of sha256>``: stable for one file, different for a retrained one, safe as a field name."""
    path = Path(model)
    digest = sha256_file(path)
    stem = re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_")[:24] or "model"
    return f"{stem}_{digest[:8]}"


class UltralyticsPredictor:
    """A ``.pt`` checkpoint run by Ultralytics' own predictor (same pre/post-processing as its val)."""

    def __init__(self, model: Path, *, conf: float, iou: float = 0.7, imgsz: int | None = None,
                 device: str | None = None, batch: int = 16) -> None:
        from yolo_ft.utils.ultralytics_env import prepare_ultralytics

        prepare_ultralytics()
        from ultralytics import YOLO

        from yolo_ft.utils.untrusted import warn_untrusted_checkpoint

        warn_untrusted_checkpoint(model)
        self.model = YOLO(str(model))
        if getattr(self.model, "task", "detect") != "detect":
            raise YoloFtError(f"{model}: a '{self.model.task}' model, review needs a detection model")
        self.names = {int(k): str(v) for k, v in self.model.names.items()}
        self.kwargs = dict(conf=conf, iou=iou, verbose=False, batch=batch)
        if imgsz:
            self.kwargs["imgsz"] = imgsz
        if device:
            self.kwargs["device"] = device

    def predict(self, images: Sequence[Path]) -> list[ImagePredictions]:
        out = []
        for r in self.model.predict([str(p) for p in images], stream=True, **self.kwargs):
            boxes = r.boxes
            cls = boxes.cls.cpu().numpy().astype(int)
            h, w = r.orig_shape
            out.append(ImagePredictions(
                xyxy=boxes.xyxy.cpu().numpy().astype(float).reshape(-1, 4),
                confidence=boxes.conf.cpu().numpy().astype(float),
                class_id=cls,
                class_name=[self.names.get(int(c), str(c)) for c in cls],
                width=int(w), height=int(h),
            ))
        return out


class OnnxPredictor:
    """A ``.onnx`` model run by yolo-ft's own runtime: the detections a deployment will produce."""

    def __init__(self, model: Path, *, conf: float, iou: float = 0.7) -> None:
        try:
            from yolo_ft.runtime import Detector
        except ImportError as e:  # the runtime stage is not part of this build
            raise YoloFtError(f"{model}: reviewing an .onnx model needs yolo_ft.runtime ({e})") from e
        import cv2

        self._cv2 = cv2
        self.detector = Detector(str(model))
        names = getattr(self.detector, "names", None) or {}
        self.names = {int(k): str(v) for k, v in dict(names).items()}
        self.conf, self.iou = conf, iou

    def predict(self, images: Sequence[Path]) -> list[ImagePredictions]:
        arrays = []
        for p in images:
            img = self._cv2.imread(str(p), self._cv2.IMREAD_COLOR)
            if img is None:
                raise YoloFtError(f"{p}: cannot read image")
            arrays.append(img)
        dets = self.detector.predict(arrays, conf=self.conf, iou=self.iou)
        out = []
        for img, d in zip(arrays, dets, strict=True):
            cls = np.asarray(d.class_id, dtype=int).reshape(-1)
            names = getattr(d, "class_name", None)
            names = [str(n) for n in names] if names is not None else [self.names.get(int(c), str(c)) for c in cls]
            out.append(ImagePredictions(
                xyxy=np.asarray(d.xyxy, dtype=float).reshape(-1, 4),
                confidence=np.asarray(d.confidence, dtype=float).reshape(-1),
                class_id=cls, class_name=names,
                width=int(img.shape[1]), height=int(img.shape[0]),
            ))
        return out


def load_predictor(model: str | Path, *, conf: float, iou: float = 0.7, imgsz: int | None = None,
                   device: str | None = None, batch: int = 16) -> Predictor:
    """Pick the backend from the file suffix; anything else is a clear error."""
    path = Path(model)
    if not path.is_file():
        raise YoloFtError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return UltralyticsPredictor(path, conf=conf, iou=iou, imgsz=imgsz, device=device, batch=batch)
    if suffix == ".onnx":
        return OnnxPredictor(path, conf=conf, iou=iou)
    raise YoloFtError(f"{path}: unsupported model format '{suffix}' (expected .pt or .onnx)")


def batched(items: Iterator, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
