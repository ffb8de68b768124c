"""Static int8 quantization with ONNX Runtime, calibrated on real images through the runtime's own
pre-processing (letterbox + RGB + /255), so the activation ranges are the ones the runtime will see.

Why the exclusions: YOLO's head output concatenates box coordinates (0..imgsz pixels) with class
probabilities (0..1). Quantizing that tensor (or the DFL softmax/decoding that produces it) with one
int8 scale rounds every class score to 0 — the "int8 YOLO gives 0 mAP" failure reported upstream.
Ultralytics' own ONNX int8 path keeps every non-Conv op float for that reason. We keep the DFL, the box
decode and the concatenation float in every scheme; the Detect branches' last convs (box-distribution and
class logits, each with a scale of its own, dequantized before the softmax/sigmoid) run int8 in the first
scheme and float in the fallbacks. The rest runs int8 as far as the accuracy gate allows — that is where
the speed comes from (see SCHEMES).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from yolo_ft.export.int8_rewrites import QUICKGELU_MAX_ELEMENTS, pad_narrow_convs, silu_as_quickgelu

log = logging.getLogger(__name__)

# Resize is not among them: see "fast" below.
_INT8_OPS = ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Split", "Slice", "MatMul", "Softmax",
             "Transpose", "Reshape")


@dataclass(frozen=True)
class Scheme:
    """Which nodes a quantization scheme leaves float (besides the final head convs, DFL and decode)."""

    ops: tuple[str, ...]  # op types that may be quantized
    head_inner: bool  # the Detect branches' inner convs *and* their activations run int8
    first_block_float: bool  # model.0 (3-channel conv + SiLU) stays float
    float_names: tuple[str, ...] = ()  # nodes whose name contains one of these stay float
    final_convs_int8: bool = False  # the Detect branches' last convs (box DFL logits, class logits) run int8


# Tried in this order by the exporter; the mAP gate keeps the first that holds accuracy. Measured on this
# project's 2-core AVX512-VNNI machine, YOLO11n at 640, with shared scales, percentile calibration and the
# rewrites in int8_rewrites.py (fp32 = 18.4-19 ms in the quiet phase):
# "fastest": "fast" with the Detect branches' last convs int8 too (for COCO's 80 classes the class convs
#          are the largest float convs left): 1.60-1.61x (bench/bench_int8.py). Their logits get their own
#          calibrated scale and are dequantized before the DFL softmax and the sigmoid, so scores keep a fine
#          grid. Kidney-stone model at 320: mAP50 0.734 / mAP50-95 0.380 vs fp32 0.730 / 0.376.
# "fast":  everything int8 but the first block (a 3-channel conv runs faster in float: 0.7 vs 1.35 ms, and
#          the input needs no quantizing), the head's final convs/DFL/decode, the two nearest-neighbour
#          upsamples (ORT's uint8 Resize in NHWC layout is slower than its float one: 0.8 vs 0.45 ms) and
#          C2PSA's attention (20x20 tokens: int8 MatMul/Softmax plus their requantizing cost more than they
#          save): 1.54-1.58x in both of the VM's load phases (1.42-1.55x before the rewrites and float
#          upsample/attention).
# "broad": the head's activations float too (its inner convs int8): ~1.3x.
# "conv":  only convolutions int8, every other op float: the safest, ~1.0x.
_ATTENTION = ("/attn/",)  # C2PSA's attention block
SCHEMES: dict[str, Scheme] = {
    "fastest": Scheme(_INT8_OPS, head_inner=True, first_block_float=True, float_names=_ATTENTION,
                      final_convs_int8=True),
    "fast": Scheme(_INT8_OPS, head_inner=True, first_block_float=True, float_names=_ATTENTION),
    "broad": Scheme(_INT8_OPS, head_inner=False, first_block_float=False, float_names=_ATTENTION),
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
    if "/dfl/" in name or op not in scheme.ops or any(part in name for part in scheme.float_names):
        return True
    if scheme.first_block_float and name.startswith("/model.0/"):
        return True
    if not name.startswith(head):
        return False
    if _is_final_head_conv(name, head):
        return not scheme.final_convs_int8
    inner = name[len(head) :].startswith(("cv2.", "cv3."))  # branch layers before the final convs
    return not inner or (op != "Conv" and not scheme.head_inner)


def _graph(model):
    """A GraphProto as is, or the graph of the ONNX file at ``model``."""
    if isinstance(model, onnx.GraphProto):
        return model
    return onnx.load(str(model), load_external_data=False).graph


def nodes_to_exclude(model, scheme: str = "fast") -> list[str]:
    """Names of the nodes that stay float under ``scheme`` (``model``: an ONNX path or a loaded graph)."""
    graph = _graph(model)
    head = _head_prefix(graph) or "\0"
    return [n.name for n in graph.node if _keeps_float(n.name, n.op_type, head, SCHEMES[scheme])]


# Ops whose int8 inputs and outputs get one shared scale: ONNX Runtime then moves their bytes unchanged.
# Without it QLinearConcat requantizes every element of every input through a lookup, on one thread
# (1.4 ms of 14.5 ms for YOLO11n at 640 here; 0.45 ms with shared scales), and Split/MaxPool/Resize
# between differently-scaled tensors keep extra requantization steps.
SHARED_SCALE_OPS = ("Concat", "Split", "MaxPool", "Resize")


def shared_scale_groups(model, excluded: set[str], quantized_ops: Sequence[str]) -> list[list[str]]:
    """Tensors joined through quantized Concat/Split/MaxPool/Resize nodes (union-find), groups of 2 or more.

    A C3k2 block's Split, its bottleneck outputs and its Concat form one group; SPPF's three MaxPools and
    their Concat another. Each group is later quantized with the union of its members' calibrated ranges.
    ``model``: an ONNX path or a loaded graph.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n in _graph(model).node:
        if n.op_type not in SHARED_SCALE_OPS or n.op_type not in quantized_ops or n.name in excluded:
            continue
        data_in = list(n.input) if n.op_type == "Concat" else list(n.input[:1])  # not Split sizes / Resize scales
        tensors = [t for t in data_in + list(n.output) if t]
        for t in tensors[1:]:
            parent[find(t)] = find(tensors[0])
    groups: dict[str, list[str]] = {}
    for t in list(parent):
        groups.setdefault(find(t), []).append(t)
    return [sorted(g) for g in groups.values() if len(g) > 1]


PERCENTILE = 99.999  # activation ranges clip the rarest 0.001 % of values (measured on the kidney-stone
#                      model: mAP50 drop 0.003 vs MinMax's 0.010; outliers otherwise coarsen every step)
CALIB_CHUNK = 4  # images per calibration pass: ORT's histogram calibrator holds every tensor of every image


def calibrate_ranges(model: Path, reader: "_Reader", scratch: Path, method: str = "Percentile") -> dict[str, tuple[float, float]]:
    """(min, max) of every activation tensor of ``model`` over the calibration images.

    Fed to ONNX Runtime's calibrator a few images at a time: its histogram calibrators keep all outputs of
    one ``collect_data`` call in memory (hundreds of MB per 640-px image for YOLO11n) and merge histograms
    between calls.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    extra = {"percentile": PERCENTILE} if method == "Percentile" else {}
    try:
        calibrator = create_calibrator(model, None, augmented_model_path=str(scratch),
                                       calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
        chunk = _Chunked(reader, CALIB_CHUNK)
        while chunk.more():
            calibrator.collect_data(chunk)
        data = calibrator.compute_data()
    finally:
        scratch.unlink(missing_ok=True)
        reader.rewind()
    return {t: (float(np.min(d.range_value[0])), float(np.max(d.range_value[1]))) for t, d in data.items()}


def range_overrides(ranges: dict[str, tuple[float, float]], groups: list[list[str]]) -> dict:
    """ORT TensorQuantOverrides: each tensor's calibrated range; a shared-scale group's members get its union."""
    widest = dict(ranges)
    for group in groups:
        known = [t for t in group if t in ranges]
        if known:
            lo, hi = min(ranges[t][0] for t in known), max(ranges[t][1] for t in known)
            widest.update({t: (lo, hi) for t in known})
    return {t: [{"rmin": np.float32(min(lo, 0.0)), "rmax": np.float32(max(hi, 0.0))}] for t, (lo, hi) in widest.items()}


class _Chunked:
    """Calibration reader that hands out at most ``n`` batches of ``reader`` per pass."""

    def __init__(self, reader: "_Reader", n: int) -> None:
        self.reader, self.n, self._left, self._peek = reader, n, 0, None
        reader.rewind()

    def more(self) -> bool:
        self._peek = self.reader.get_next() if self._peek is None else self._peek
        self._left = self.n
        return self._peek is not None

    def get_next(self):
        if self._left <= 0 or self._peek is None:
            return None
        item, self._peek, self._left = self._peek, None, self._left - 1
        if self._left > 0:
            self._peek = self.reader.get_next()
        return item


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


@dataclass
class Calibration:
    """The graph to quantize (ORT-pre-processed) and its activation ranges: computed once per export and
    shared by every scheme the gate tries."""

    graph_path: Path
    graph: Any  # onnx.GraphProto of graph_path, loaded once
    input_name: str
    batch: int
    images: list[Path]
    imgsz: tuple[int, int]
    method: str
    ranges: dict[str, tuple[float, float]]
    padded: list[str] = field(default_factory=list)  # convs widened by pad_narrow_convs


def calibrate(
    fp32_onnx: str | Path, work: str | Path, calib_images: Sequence[Path], imgsz: tuple[int, int],
    method: str = "Percentile", pad: bool = True,
) -> Calibration:
    """Pre-process ``fp32_onnx`` for quantization into ``work`` (a folder) and calibrate it on the images
    (``pad``: then widen narrow convs, see int8_rewrites)."""
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sess = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
    del sess
    work = Path(work)
    pre = work / (Path(fp32_onnx).stem + ".pre.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
    except Exception as e:  # pre-processing is an optimisation; quantize the raw graph if it fails
        log.debug("quant_pre_process failed (%s); quantizing the exported graph as is", e)
        model = onnx.load(str(fp32_onnx))
        onnx.save(model, str(pre))  # calibration and quantization read the graph from `pre`
    reader = _Reader(calib_images, imgsz, inp.name, batch)
    ranges = calibrate_ranges(pre, reader, work / (Path(fp32_onnx).stem + ".aug.onnx"), method)
    # Padded after calibration: the zero channels would otherwise shift the percentile of the widened tensors.
    padded = pad_narrow_convs(model) if pad else []
    if padded:
        onnx.save(model, str(pre))
    return Calibration(pre, model.graph, inp.name, batch, list(calib_images), tuple(imgsz), method, ranges, padded)


def quantize_int8(
    fp32_onnx: str | Path,
    out: str | Path,
    calib_images: Sequence[Path],
    imgsz: tuple[int, int],
    scheme: str = "fast",
    method: str = "Percentile",
    calibration: Calibration | None = None,
    quickgelu_max_elements: int | None = QUICKGELU_MAX_ELEMENTS,
) -> dict:
    """Write an int8 QDQ model (per-channel int8 weights, uint8 activations) and say how it was made.

    Pass ``calibration`` (from :func:`calibrate` on the same model and images) to skip pre-processing and
    calibration, as the exporter does when it tries several schemes. ``quickgelu_max_elements``: see
    :func:`~yolo_ft.export.int8_rewrites.silu_as_quickgelu` (0: keep every SiLU as two int8 ops).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration is None:
        with tempfile.TemporaryDirectory(prefix=".calib.", dir=Path(out).parent) as work:
            cal = calibrate(fp32_onnx, work, calib_images, imgsz, method)
            return quantize_int8(fp32_onnx, out, calib_images, imgsz, scheme, method, cal, quickgelu_max_elements)
    cal = calibration
    exclude = nodes_to_exclude(cal.graph, scheme)
    groups = shared_scale_groups(cal.graph, set(exclude), SCHEMES[scheme].ops)
    quantize_static(
        str(cal.graph_path),
        str(out),
        _Reader(cal.images[: cal.batch], cal.imgsz, cal.input_name, cal.batch),  # ranges: `overrides` (below)
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # Every activation range comes from the overrides (calibrated on all images); ORT's own pass runs
        # one image only to list the tensors (its CalibMaxIntermediateOutputs drops data in ORT 1.32).
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
        op_types_to_quantize=list(SCHEMES[scheme].ops),
        extra_options={"TensorQuantOverrides": range_overrides(cal.ranges, groups)},
    )
    model = onnx.load(str(out))
    fused = silu_as_quickgelu(model, quickgelu_max_elements) if quickgelu_max_elements != 0 else 0
    if fused:
        onnx.save(model, str(out))
    return {
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": f"uint8 per-tensor ({cal.method} calibration"
        + (f" {PERCENTILE}" if cal.method == "Percentile" else "") + ")",
        "calibration_images": len(cal.images),
        "scheme": scheme,
        "quantized_ops": list(SCHEMES[scheme].ops),
        "float_kept": ("DFL and box decode" if SCHEMES[scheme].final_convs_int8
                       else "Detect head final class/box convs, DFL and box decode")
        + (", the first conv block" if SCHEMES[scheme].first_block_float else "")
        + ("" if SCHEMES[scheme].head_inner else ", the head's activations")
        + "".join(f", nodes named *{part}*" for part in SCHEMES[scheme].float_names)
        + " (plus op types not quantized)",
        "nodes_kept_float": len(exclude),
        "shared_scale_groups": len(groups),
        "shared_scale_tensors": sum(len(g) for g in groups),
        "silu_as_quickgelu": fused,  # int8 SiLUs run as DQ -> com.microsoft.QuickGelu -> Q
        "padded_convs": list(cal.padded),
    }
