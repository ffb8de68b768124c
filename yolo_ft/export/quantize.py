"""Static int8 quantization with ONNX Runtime, calibrated on real images through the runtime's own
pre-processing (letterbox + RGB + /255), so the activation ranges are the ones the runtime will see.

Why the exclusions: YOLO's head output concatenates box coordinates (0..imgsz pixels) with class
probabilities (0..1). Quantizing that tensor (or the DFL softmax/decoding that produces it) with one
int8 scale rounds every class score to 0 — the "int8 YOLO gives 0 mAP" failure reported upstream.
Ultralytics' own ONNX int8 path keeps every non-Conv op float for that reason. We keep the Detect head's
final class/box convs, the DFL and the box decode float in every scheme and let the rest run int8 as far
as the accuracy gate allows — that is where the speed comes from (see SCHEMES).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_ALL_OPS = ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Resize", "Split", "Slice", "MatMul",
            "Softmax", "Transpose", "Reshape")


@dataclass(frozen=True)
class Scheme:
    """Which nodes a quantization scheme leaves float (besides the final head convs, DFL and decode)."""

    ops: tuple[str, ...]  # op types that may be quantized
    head_inner: bool  # the Detect branches' inner convs *and* their activations run int8
    first_block_float: bool  # model.0 (3-channel conv + SiLU) stays float


# Tried in this order by the exporter; the mAP gate keeps the first that holds accuracy. Measured on this
# project's 2-core AVX512-VNNI machine, YOLO11n at 640 (bench/bench_runtime.py, fp32 = 18.5 ms):
# "fast":  everything int8 but the first block (a 3-channel conv runs faster in float: 0.9 vs 1.6 ms, and
#          the input needs no quantizing) and the head's final convs/DFL/decode: 14.3 ms (1.30x).
# "broad": the head's activations float too (its inner convs int8): 15.5 ms (1.20x).
# "conv":  only convolutions int8, every other op float: the safest, ~1.1x.
SCHEMES: dict[str, Scheme] = {
    "fast": Scheme(_ALL_OPS, head_inner=True, first_block_float=True),
    "broad": Scheme(_ALL_OPS, head_inner=False, first_block_float=False),
    "conv": Scheme(("Conv",), head_inner=False, first_block_float=False),
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


def _keeps_float(name: str, op: str, head: str, scheme: Scheme) -> bool:
    if "/dfl/" in name or op not in scheme.ops:
        return True
    if scheme.first_block_float and name.startswith("/model.0/"):
        return True
    if not name.startswith(head):
        return False
    if _is_final_head_conv(name, head):
        return True
    inner = name[len(head) :].startswith(("cv2.", "cv3."))  # branch layers before the final convs
    return not inner or (op != "Conv" and not scheme.head_inner)


def nodes_to_exclude(onnx_path: str | Path, scheme: str = "fast") -> list[str]:
    """Names of the nodes that stay float under ``scheme``."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    head = _head_prefix(graph) or "\0"
    return [n.name for n in graph.node if _keeps_float(n.name, n.op_type, head, SCHEMES[scheme])]


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
    scheme: str = "fast",
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
        op_types_to_quantize=list(SCHEMES[scheme].ops),
    )
    pre.unlink(missing_ok=True)
    return {
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "uint8 per-tensor (MinMax calibration)",
        "calibration_images": len(calib_images),
        "scheme": scheme,
        "quantized_ops": list(SCHEMES[scheme].ops),
        "float_kept": "Detect head final class/box convs, DFL and box decode"
        + (", the first conv block" if SCHEMES[scheme].first_block_float else "")
        + ("" if SCHEMES[scheme].head_inner else ", the head's activations")
        + " (plus op types not quantized)",
        "nodes_kept_float": len(exclude),
    }
