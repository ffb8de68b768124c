"""Torch-free inference for exported yolo-ft models: onnxruntime + numpy + cv2 only.

This folder is self-contained (it imports nothing else from yolo_ft), so an app may copy it as is.
"""

from .detector import Detections, Detector, load_image
from .letterbox import letterbox, letterbox_params, letterbox_to_blob, scale_boxes, to_blob
from .nms import non_max_suppression

__all__ = ["Detections", "Detector", "letterbox", "letterbox_params", "letterbox_to_blob", "load_image",
           "non_max_suppression", "scale_boxes", "to_blob"]
