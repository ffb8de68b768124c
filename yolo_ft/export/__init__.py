"""best.pt -> checked model.onnx (fp32 / fp16 / gated int8) with provenance; plus ``predict``.

``from yolo_ft.export.onnx import export`` — kept lazy so ``import yolo_ft.export`` stays light.
"""
