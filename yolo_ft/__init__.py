"""yolo-ft: turn a small labelled image set into a deployed YOLO11 detector by transfer learning.

The four stages are separate subpackages with one-way data flow:
``prepare`` (labelled images -> YOLO dataset), ``train`` (dataset -> best.pt),
``export`` (best.pt -> model.onnx) and ``review`` (dataset + model -> FiftyOne).
``runtime`` runs exported models with onnxruntime + numpy + cv2 only.

Heavy imports (torch, ultralytics, fiftyone) are deferred to the functions that need them,
so ``import yolo_ft`` and ``yolo_ft.runtime`` stay light.
"""

__version__ = "0.1.0"
