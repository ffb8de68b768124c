"""Static int8 quantization with ONNX Runtime, calibrated on real images through the runtime's own
pre-processing (letterbox + RGB + /255), so the activation ranges are the ones the runtime will see.

Why the exclusions: YOLO's head output concatenates box coordinates (0..imgsz pixels) with class
probabilities (0..1). Quantizing that tensor (or the DFL softmax/decoding that produces it) with one
int8 scale rounds every class score to 0 — the "int8 YOLO gives 0 mAP" failure reported upstream.
Ultralytics' own ONNX int8 path keeps every non-Conv op float for that reason. We keep the whole Detect
head float except its inner convs (final class/box convs, DFL, decode, Concat), and let the backbone and
neck run fully int8 where the gate allows it — that is where the speed comes from (see SCHEMES).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Two schemes, tried in this order by the exporter (the mAP gate picks the first that holds accuracy):
# "broad": every backbone/neck op runs int8 (fewer float<->int8 hops: ~1.8x faster than fp32 on
#          AVX512-VNNI CPUs for YOLO11n at 640), while the whole Detect head except its inner convs
#          stays float: its final class/box convs, DFL and the decode.
# "conv":  only convolutions outside the head's final layers; everything else float (~1.4x).
SCHEMES: dict[str, tuple[str, ...]] = {
    "broad": ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Resize", "Split", "Slice",
              "MatMul", "Softmax", "Transpose", "Reshape"),
    "conv": ("Conv",),
}


def _head_prefix(graph) -> str | None:
    """Name prefix of the Detect module (e.g. '/model.23/'): the last model.N that owns a Conv."""
    best = -1
    for n in graph.node:
        if n.op_type == "Conv" and n.name.startswith("/model."):
            try:
                best = max(best, int(n.name.split("/")[1].split(".")[1]))
            except (IndexError, ValueError):
                continue
    return f"/model.{best}/" if best >= 0 else None


def _is_final_head_conv(name: str, head: str) -> bool:
    # Detect's last conv per branch is '/model.N/cv2.i/cv2.i.2/Conv' (box) or '/model.N/cv3.i/cv3.i.2/Conv' (class).
    parts = name[len(head) :].split("/")
    return len(parts) == 3 and parts[2] == "Conv" and parts[0].startswith(("cv2.", "cv3."))


def nodes_to_exclude(onnx_path: str | Path, scheme: str = "broad") -> list[str]:
    """Names of the nodes that stay float under ``scheme``."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    head = _head_prefix(graph) or "\0"
    ops = SCHEMES[scheme]
    out = []
    for n in graph.node:
        in_head = n.name.startswith(head)
        if "/dfl/" in n.name or n.op_type not in ops:
            out.append(n.name)
        elif in_head and (n.op_type != "Conv" or _is_final_head_conv(n.name, head)):
            out.append(n.name)
    return out


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed real images (one image per batch)."""

    def __init__(self, images: Sequence[Path], imgsz: tuple[int, int], input_name: str, batch: int) -> None:
        self.images, self.imgsz, self.input_name, self.batch = list(images), imgsz, input_name, batch
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        from yolo_ft.runtime import letterbox, load_image, to_blob

        for i in range(0, len(self.images) - self.batch + 1, self.batch):
            boxed = [letterbox(load_image(p), self.imgsz)[0] for p in self.images[i : i + self.batch]]
            yield {self.input_name: to_blob(boxed)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._gen()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_int8(
    fp32_onnx: str | Path,
    out: str | Path,
    calib_images: Sequence[Path],
    imgsz: tuple[int, int],
    scheme: str = "broad",
) -> dict:
    """Write an int8 QDQ model (per-channel int8 weights, uint8 activations) and say how it was made."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sess = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
    del sess
    pre = Path(out).with_name(Path(out).stem + ".pre.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        src = pre
    except Exception as e:  # pre-processing is an optimisation; quantize the raw graph if it fails
        log.debug("quant_pre_process failed (%s); quantizing the exported graph as is", e)
        src = Path(fp32_onnx)
    exclude = nodes_to_exclude(src, scheme)
    quantize_static(
        str(src),
        str(out),
        _Reader(calib_images, imgsz, inp.name, batch),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
        op_types_to_quantize=list(SCHEMES[scheme]),
    )
    pre.unlink(missing_ok=True)
    return {
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "uint8 per-tensor (MinMax calibration)",
        "calibration_images": len(calib_images),
        "scheme": scheme,
        "quantized_ops": list(SCHEMES[scheme]),
        "float_kept": "Detect head final class/box convs, DFL and box decode (plus non-quantized op types)",
        "nodes_kept_float": len(exclude),
    }
