"""``Detector``: run an exported YOLO ONNX model with onnxruntime + numpy + cv2 only.

Letterbox, NMS and rescaling reproduce Ultralytics' so detections agree with ``YOLO(best.pt).predict``;
model facts (class names, input size, stride) come from the metadata Ultralytics writes into the ONNX
file. This folder imports nothing else from yolo_ft, so it can be copied into an app on its own.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import onnxruntime as ort

from .letterbox import PAD_BLOB_VALUE, letterbox_params, letterbox_to_blob, scale_boxes
from .nms import end2end_filter, non_max_suppression
from .pool import parallel_map, submit_each

log = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]


@dataclass
class Detections:
    """Detections for one image, in original-image pixels, highest confidence first."""

    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64
    class_name: list[str] = field(default_factory=list)
    image: str | None = None  # source path when the input was a path

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    def to_list(self) -> list[dict[str, Any]]:
        """Plain JSON-able dicts: {"xyxy", "confidence", "class_id", "class_name"}."""
        return [
            {
                "xyxy": [float(v) for v in self.xyxy[i]],
                "confidence": float(self.confidence[i]),
                "class_id": int(self.class_id[i]),
                "class_name": self.class_name[i],
            }
            for i in range(len(self))
        ]


# Input tensors kept for reuse between calls (per Detector).
_SPARE_BUFFERS = 2

# Metadata key under which ``yolo-ft export`` embeds its report (provenance + parity figures) as JSON.
EXPORT_REPORT_KEY = "yolo_ft_export"


def _parse_meta(value: str | None) -> Any:
    """Ultralytics stores str(python_object); parse literals only (never eval)."""
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, else CPU (with a notice, so a slow run is explained)."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    log.warning("CUDAExecutionProvider not available in this onnxruntime; running on CPU")
    return ["CPUExecutionProvider"]


def load_image(source: ImageInput) -> np.ndarray:
    """A BGR uint8 image from a path or an array; a clear error naming the file otherwise."""
    if isinstance(source, np.ndarray):
        if source.ndim == 2:
            return cv2.cvtColor(source, cv2.COLOR_GRAY2BGR)
        if source.ndim != 3 or source.shape[2] not in (3, 4):
            raise ValueError(f"expected an HxWx3 BGR image array, got shape {source.shape}")
        return source if source.shape[2] == 3 else cv2.cvtColor(source, cv2.COLOR_BGRA2BGR)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image (cv2.imread failed)")
    return img


class Detector:
    """An ONNX YOLO detector. ``Detector("model.onnx").predict("img.jpg")[0].xyxy``."""

    def __init__(
        self,
        model: str | os.PathLike,
        providers: Sequence[str] | None = None,
        imgsz: int | Sequence[int] | None = None,
        batch_size: int = 8,
    ) -> None:
        self.path = Path(model)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = list(providers or default_providers())
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=wanted)
        if wanted[0] != "CPUExecutionProvider" and self.session.get_providers()[0] != wanted[0]:
            # ORT falls back silently when a provider's libraries (CUDA, cuDNN) fail to load.
            log.warning("%s could not be loaded (see onnxruntime's message above); running on %s",
                        wanted[0], self.session.get_providers()[0])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k: _parse_meta(v) for k, v in meta.items() if k != EXPORT_REPORT_KEY}
        # What yolo-ft export recorded (source checkpoint sha256, data, classes, parity figures); None for
        # a model exported by other tools, or (with a warning) when the entry is unreadable: provenance
        # must never stop a model from running.
        self.export_report: dict | None = None
        if EXPORT_REPORT_KEY in meta:
            try:
                self.export_report = json.loads(meta[EXPORT_REPORT_KEY])
            except ValueError as e:
                log.warning("%s: unreadable %s metadata (%s); export report ignored", self.path, EXPORT_REPORT_KEY, e)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [self.session.get_outputs()[0].name]
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        b, _, h, w = inp.shape
        self.dynamic_batch = not isinstance(b, int)
        self.fixed_batch = None if self.dynamic_batch else int(b)
        self.batch_size = batch_size if self.dynamic_batch else int(b)
        self.dynamic_hw = not (isinstance(h, int) and isinstance(w, int))
        if not self.dynamic_hw:
            self.imgsz = (h, w)  # a fixed-shape graph accepts nothing else
        else:
            size = imgsz or self.metadata.get("imgsz") or 640
            self.imgsz = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        names = self.metadata.get("names") or {}
        if isinstance(names, list):
            names = dict(enumerate(names))
        self.names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        self.stride = int(self.metadata.get("stride") or 32)
        self.task = self.metadata.get("task", "detect")
        self.end2end = bool(self.metadata.get("end2end", False))
        if self.task != "detect":
            raise ValueError(f"{self.path}: task '{self.task}' is not supported (detection models only)")
        # Spare input tensors for reuse (a fresh one page-faults, see to_blob): a call takes one and gives it
        # back after ``run``, so concurrent calls never share a buffer, and at most _SPARE_BUFFERS stay
        # allocated however many threads call (a 16-thread server at batch 8 would otherwise keep 16 x 39 MB).
        self._spare: list[np.ndarray] = []
        self._spare_lock = threading.Lock()

    def _take_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A spare input tensor of ``shape`` (contents undefined), or a new one."""
        with self._spare_lock:
            for k, buf in enumerate(self._spare):
                if buf.shape == shape:
                    return self._spare.pop(k)
        return np.empty(shape, self.input_dtype)

    def _give_buffer(self, buf: np.ndarray) -> None:
        with self._spare_lock:
            if len(self._spare) < _SPARE_BUFFERS:
                self._spare.append(buf)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
    ) -> list[Detections]:
        """Detect objects in one image or a list (paths or BGR arrays); one ``Detections`` per image."""
        if isinstance(images, (str, os.PathLike, np.ndarray)):
            images = [images]
        items = list(images)
        results: list[Detections | None] = [None] * len(items)
        n, step = len(items), self.batch_size
        chunks = [list(range(s, min(s + step, n))) for s in range(0, n, step)]
        loading: list[Callable[[], np.ndarray]] = []
        for c, idx in enumerate(chunks):
            if c == 0:
                originals = dict(zip(idx, parallel_map(load_image, [items[i] for i in idx])))
            else:
                originals = dict(zip(idx, [loaded() for loaded in loading]))
            if c + 1 < len(chunks):  # the next chunk decodes on the pool while this one runs
                loading = submit_each(load_image, [items[i] for i in chunks[c + 1]])
            if self.dynamic_hw:
                # Like Ultralytics for .pt and dynamic models: images of one shape share the minimum
                # stride-multiple rectangle; different shapes run separately (each gets its own rectangle).
                groups: dict[tuple[int, ...], list[int]] = {}
                for i in idx:
                    groups.setdefault(originals[i].shape, []).append(i)
                batches = list(groups.values())
            else:
                batches = [idx]
            for group in batches:
                ims = [originals[i] for i in group]
                # One group shares the padded shape (same image shape, or a fixed-shape graph).
                h, w = letterbox_params(ims[0].shape[:2], self.imgsz, self.dynamic_hw, self.stride).padded_hw
                rows = max(len(ims), self.fixed_batch or 0)  # static batch: the rest are grey frames
                buf = self._take_buffer((rows, 3, h, w))
                parallel_map(lambda k: letterbox_to_blob(ims[k], self.imgsz, buf[k], self.dynamic_hw, self.stride),
                             range(len(ims)))
                buf[len(ims):] = PAD_BLOB_VALUE
                try:
                    raw = self.session.run(self.output_names, {self.input_name: buf})[0]
                finally:  # ORT has copied or finished reading the input when run returns
                    self._give_buffer(buf)
                input_hw = buf.shape[2:]
                for k, i in enumerate(group):
                    results[i] = self._postprocess(
                        raw[k], input_hw, ims[k].shape[:2], items[i], conf, iou, max_det
                    )
        return results  # type: ignore[return-value]

    def _postprocess(
        self,
        raw: np.ndarray,
        input_hw: tuple[int, int],
        orig_hw: tuple[int, int],
        source: ImageInput,
        conf: float,
        iou: float,
        max_det: int,
    ) -> Detections:
        raw = raw.astype(np.float32, copy=False)
        if self.end2end or (raw.ndim == 2 and raw.shape[-1] == 6 and raw.shape[0] != 6):
            det = end2end_filter(raw, conf, max_det)
        else:
            det = non_max_suppression(raw, conf, iou, max_det)
        boxes = scale_boxes(det[:, :4].copy(), input_hw, orig_hw)
        cls = det[:, 5].astype(np.int64)
        return Detections(
            xyxy=boxes.astype(np.float32, copy=False),
            confidence=det[:, 4].copy(),
            class_id=cls,
            class_name=[self.names.get(int(c), str(int(c))) for c in cls],
            image=None if isinstance(source, np.ndarray) else str(source),
        )
