"""Rebuild a trainable Ultralytics YOLO11 checkpoint from an exported (possibly int8) ONNX model.

Why: machines without internet cannot fetch ``yolo11n.pt``, but an ONNX export of the same COCO
weights can be carried in. An export has BatchNorm fused into the convolutions and may hold int8
weights (onnxruntime dynamic quantization: ``X_quantized`` + ``X_scale`` + ``X_zero_point``), so
we dequantize, map every conv back onto ``model.{i}...`` of a model built from the matching
``yolo11{n,s,m,l,x}.yaml``, and re-create BatchNorm layers with statistics measured on real images
(:mod:`yolo_ft.train.bn_calibration`).
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from yolo_ft.records import YoloFtError
from yolo_ft.utils import onnx_graph
from yolo_ft.utils.hashing import sha256_file

log = logging.getLogger(__name__)

# Ultralytics YOLO11 width of layer 0 per scale (64 * width multiple) -> candidate scales.
_SCALE_BY_STEM_WIDTH = {16: ("n",), 32: ("s",), 64: ("m", "l"), 96: ("x",)}
LICENSE = "AGPL-3.0"


@dataclass
class OnnxWeights:
    """Float weights of an ONNX model keyed by their (de-suffixed) initializer names, plus metadata."""

    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]
    quantized: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()


def _load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise YoloFtError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError etc.
        raise YoloFtError(f"{path}: not a readable ONNX model ({e})") from e


def _quant_axis(model, q_name: str, q: np.ndarray, scale: np.ndarray) -> int | None:
    """Axis of a per-channel scale: taken from the consuming node when it says, checked against shapes."""
    if scale.size == 1:
        return None
    axis = None
    for node in model.graph.node:
        if q_name in node.input:
            if node.op_type == "DequantizeLinear":
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            elif node.op_type == "ConvInteger":
                axis = 0  # per output channel
            elif node.op_type == "MatMulInteger":
                axis = q.ndim - 1  # per output column
            break
    if axis is None:  # unknown consumer: the only dimension the scale fits
        fits = [d for d in range(q.ndim) if q.shape[d] == scale.size]
        if len(fits) != 1:
            raise YoloFtError(f"cannot tell the quantization axis of {q_name} {q.shape} (scale {scale.shape})")
        axis = fits[0]
    axis = axis % q.ndim
    if q.shape[axis] != scale.size:
        raise YoloFtError(f"{q_name}: per-channel scale of {scale.size} does not match axis {axis} of {q.shape}")
    return axis


def read_onnx_weights(path: Path) -> OnnxWeights:
    """All float initializers, with ``*_quantized`` ones dequantized: (q - zero_point) * scale."""
    from onnx import numpy_helper

    model = _load_onnx(path)
    raw = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    tensors: dict[str, np.ndarray] = {}
    quantized = []
    for name, arr in raw.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale, zp = raw.get(base + "_scale"), raw.get(base + "_zero_point")
            if scale is None:
                raise YoloFtError(f"{path}: {name} has no {base}_scale initializer")
            zp = np.zeros_like(scale, dtype=np.int64) if zp is None else zp
            axis = _quant_axis(model, name, arr, scale)
            shape = [1] * arr.ndim
            if axis is not None:
                shape[axis] = -1
            s = scale.astype(np.float64).reshape(shape)
            z = zp.astype(np.int64).reshape(shape)
            tensors[base] = ((arr.astype(np.int64) - z) * s).astype(np.float32)
            quantized.append(base)
        elif not (name.endswith("_scale") or name.endswith("_zero_point")) and arr.dtype.kind == "f":
            tensors[name] = arr.astype(np.float32)
    _rebind_conv_params(model, tensors)
    meta = {p.key: p.value for p in model.metadata_props}
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    input_shape = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
    return OnnxWeights(tensors=tensors, metadata=meta, quantized=sorted(quantized), input_shape=input_shape)


def _rebind_conv_params(model, tensors: dict[str, np.ndarray]) -> None:
    """Key each conv's bias by its weight's module name, following the graph rather than trusting
    initializer names: onnxslim merges identical initializers (e.g. all-zero biases) under one name."""
    producers, consumers = onnx_graph.producers(model.graph), onnx_graph.consumers(model.graph)

    def base_of(name: str) -> str:
        node = producers.get(name)
        if node is not None and node.op_type == "DequantizeLinear":  # QDQ format
            name = node.input[0]
        return name[: -len("_quantized")] if name.endswith("_quantized") else name

    def only(name: str, op: str):
        nxt = consumers.get(name, [])
        return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None

    for n in model.graph.node:
        bias = None
        if n.op_type == "Conv":
            wname = base_of(n.input[1])
            if len(n.input) > 2 and n.input[2]:
                bias = tensors.get(n.input[2])
        elif n.op_type == "ConvInteger":
            wname = base_of(n.input[1])
            cast = only(n.output[0], "Cast")
            mul = cast and only(cast.output[0], "Mul")
            add = mul and only(mul.output[0], "Add")
            if add is not None:
                other = next(i for i in add.input if i != mul.output[0])
                src = producers.get(other)
                bias = tensors.get(src.input[0]) if src is not None and src.op_type == "Reshape" else tensors.get(other)
        else:
            continue
        if wname in tensors and wname.endswith(".weight") and bias is not None:
            tensors[wname[: -len("weight")] + "bias"] = bias.reshape(-1)


def parse_names(meta: dict[str, str]) -> dict[int, str] | None:
    """Class names from Ultralytics' ``names`` metadata (a Python/YAML dict literal), never eval'd."""
    text = meta.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        import yaml

        try:
            names = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise YoloFtError(f"ONNX metadata 'names' is not a dict literal: {text[:80]!r}") from e
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise YoloFtError(f"ONNX metadata 'names' is not a dict: {text[:80]!r}")
    return {int(k): str(v) for k, v in names.items()}


def infer_scale(tensors: dict[str, np.ndarray]) -> str:
    """YOLO11 scale from layer 0's width and whether C3k2 blocks repeat (l/x have 2 bottlenecks)."""
    w0 = tensors.get("model.0.conv.weight")
    if w0 is None:
        raise YoloFtError("ONNX model has no 'model.0.conv.weight': not an Ultralytics YOLO export with module names")
    cands = _SCALE_BY_STEM_WIDTH.get(int(w0.shape[0]))
    if not cands:
        raise YoloFtError(f"layer 0 has {w0.shape[0]} channels: not a YOLO11 n/s/m/l/x model")
    deep = "model.2.m.1.cv1.conv.weight" in tensors
    if len(cands) == 1:
        return cands[0]
    return "l" if deep else "m"


def _head_nc(tensors: dict[str, np.ndarray]) -> int:
    w = tensors.get("model.23.cv3.0.2.weight")
    if w is None:
        raise YoloFtError("ONNX model has no 'model.23.cv3.0.2.weight': not a YOLO11 detection head")
    return int(w.shape[0])


def build_model(onw: OnnxWeights, source: Path):
    """A DetectionModel from the matching yaml with the ONNX weights loaded; BN set to identity
    (mean 0, var 1, gamma sqrt(1 + eps), beta = fused bias) until calibrated. Returns (model, scale)."""
    import torch
    from torch import nn
    from ultralytics.nn.tasks import DetectionModel

    task = onw.metadata.get("task", "detect")
    if task != "detect":
        raise YoloFtError(f"{source}: task is {task!r}; only detection models can be imported")
    t = onw.tensors
    scale = infer_scale(t)
    nc = _head_nc(t)
    names = parse_names(onw.metadata) or {i: f"class{i}" for i in range(nc)}
    if len(names) != nc:
        raise YoloFtError(f"{source}: head has {nc} classes but metadata lists {len(names)} names")
    model = DetectionModel(f"yolo11{scale}.yaml", nc=nc, verbose=False)
    model.names = names

    used: set[str] = set()
    mods = dict(model.named_modules())
    with torch.no_grad():
        for mname, m in mods.items():
            if not isinstance(m, nn.Conv2d):
                continue
            wkey = f"{mname}.weight"
            if wkey not in t:
                raise YoloFtError(f"{source}: no weight for {wkey} in the ONNX model (scale {scale}?)")
            w = torch.from_numpy(t[wkey])
            if tuple(w.shape) != tuple(m.weight.shape):
                raise YoloFtError(f"{source}: {wkey} is {tuple(w.shape)}, yolo11{scale} expects {tuple(m.weight.shape)}")
            used.add(wkey)
            parent = mods.get(mname.rsplit(".", 1)[0]) if mname.endswith(".conv") else None
            bkey = f"{mname}.bias"
            bias = torch.from_numpy(t[bkey]) if bkey in t else None
            if bias is not None:
                used.add(bkey)
            if parent is not None and isinstance(getattr(parent, "bn", None), nn.BatchNorm2d):
                m.weight.copy_(w)
                bn = parent.bn
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(bias if bias is not None else torch.zeros_like(bn.bias))
            elif mname.endswith("dfl.conv"):
                # DFL's conv is a fixed arange(16) projection, not learned: keep the exact one, check the
                # export agrees to within one int8 step (symmetric int8 cannot hold 0..15 exactly)
                err = float((w - m.weight).abs().max())
                if err > 0.5 * float(m.weight.max()) / 127 + 1e-4:
                    raise YoloFtError(f"{source}: DFL weights differ from arange({m.weight.shape[1]}) by {err:.3g}")
                if err > 1e-4:
                    log.warning("%s: DFL weights are arange(16) only to %.3g (int8 rounding); using the exact values", source, err)
            else:
                m.weight.copy_(w)
                if m.bias is not None:
                    if bias is None:
                        raise YoloFtError(f"{source}: no bias for {bkey}")
                    m.bias.copy_(bias)
    unused = sorted(k for k in t if k.startswith("model.") and k.endswith(("weight", "bias")) and k not in used)
    if unused:
        raise YoloFtError(f"{source}: ONNX weights with no place in yolo11{scale}: {unused[:5]}")
    return model, scale


def dequantized_onnx(path: Path):
    """The same ONNX graph with every ConvInteger block replaced by a float Conv on dequantized
    weights: what our PyTorch model must reproduce to float rounding (the int8 graph also
    quantizes activations at run time, so it only agrees to within that quantization noise)."""
    import onnx
    from onnx import helper, numpy_helper

    model = _load_onnx(path)
    onw = read_onnx_weights(path)
    g = model.graph
    producers, consumers = onnx_graph.producers(g), onnx_graph.consumers(g)
    drop, new_nodes, new_inits = set(), [], []
    for n in g.node:
        if n.op_type != "ConvInteger":
            continue
        dq = producers[n.input[0]]
        if dq.op_type != "DynamicQuantizeLinear":
            raise YoloFtError(f"{path}: unexpected ConvInteger input pattern at {n.name}")
        (cast,) = consumers[n.output[0]]
        (mul,) = consumers[cast.output[0]]
        base = n.input[1][: -len("_quantized")]
        wname = base + "_dequantized"
        new_inits.append(numpy_helper.from_array(onw.tensors[base], wname))
        conv = helper.make_node("Conv", [dq.input[0], wname], [mul.output[0]], name=n.name + "_float")
        conv.attribute.extend(n.attribute)
        new_nodes.append((n.name, conv))
        drop.update({id(n), id(cast), id(mul)})
    nodes = []
    by_name = dict(new_nodes)
    for n in g.node:
        if n.name in by_name and n.op_type == "ConvInteger":
            nodes.append(by_name[n.name])
        elif id(n) not in drop:
            nodes.append(n)
    # dead-code elimination: DynamicQuantizeLinear and scale Muls no longer feed anything
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed] + new_inits
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(model)
    return model


def checkpoint_dict(model, *, scale: str, source: Path, calib: Sequence[Path], imgsz: int, half: bool) -> dict:
    """The dict Ultralytics writes for a finished model (see ``strip_optimizer``) plus our provenance."""
    import copy

    from ultralytics import __version__

    train_args = {"task": "detect", "model": f"yolo11{scale}.yaml", "imgsz": imgsz, "single_cls": False}
    m = copy.deepcopy(model)
    m.args = dict(train_args)
    m = m.half() if half else m.float()
    for p in m.parameters():
        p.requires_grad = False
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "date": now,
        "version": __version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": m,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": train_args,
        "train_metrics": None,
        "train_results": None,
        "yolo_ft_provenance": {
            "source_file": source.name,
            "source_sha256": sha256_file(source),
            "license": LICENSE,
            "converted_by": "yolo_ft.train.weights.import_onnx_weights",
            "calibration_images": [p.name for p in calib],
            "calibration_imgsz": imgsz,
            "storage_dtype": "float16" if half else "float32",
            "date": now,
        },
    }


def import_onnx_weights(
    onnx_path: Path | str,
    out_path: Path | str,
    *,
    calib_images: list[Path] | None = None,
    imgsz: int = 640,
    half: bool = True,
) -> Path:
    """Write a trainable Ultralytics checkpoint rebuilt from ``onnx_path`` to ``out_path`` (atomically).

    ``calib_images``: real images (files or folders) for the BatchNorm statistics; defaults to
    Ultralytics' bundled bus.jpg and zidane.jpg. Use images like the ones you will fine-tune on
    when you can. ``half`` stores fp16 like Ultralytics' own checkpoints (half the file size).
    """
    import torch

    from yolo_ft.train.bn_calibration import calibrate_batchnorm, calibration_views, expand_image_paths
    from yolo_ft.utils.atomic import atomic_output_file
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    calib = expand_image_paths(calib_images or default_calibration_images())
    model, scale = import_onnx_model(onnx_path)
    torch.manual_seed(0)
    info = calibrate_batchnorm(model, calibration_views(calib, imgsz))
    log.info("imported %s as yolo11%s; BN calibrated on %d views of %d images", onnx_path.name, scale, info["views"], len(calib))
    ckpt = checkpoint_dict(model, scale=scale, source=onnx_path, calib=calib, imgsz=imgsz, half=half)
    with atomic_output_file(out_path) as tmp:
        torch.save(ckpt, tmp)
        os.chmod(tmp, 0o644 & ~_umask())  # mkstemp makes 0600; a shipped checkpoint must be readable
    return out_path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def import_onnx_model(onnx_path: Path):
    """Uncalibrated float model (BN = identity) from an ONNX file; returns (model, scale)."""
    onw = read_onnx_weights(Path(onnx_path))
    model, scale = build_model(onw, Path(onnx_path))
    return model.float().eval(), scale


def default_calibration_images() -> list[Path]:
    """Ultralytics' bundled bus.jpg and zidane.jpg: real COCO-like photos present on every install."""
    from ultralytics.utils import ASSETS

    return [Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"]


def compare_with_onnx(
    model, onnx_path: Path | str, images: Sequence[Path], *, dequantize: bool = False, conf_thres: float = 0.25
) -> dict[str, float]:
    """Max |difference| between the PyTorch model (eval) and onnxruntime on the same letterboxed
    input, split into box coordinates (pixels) and class scores (0-1), over all anchors and over the
    anchors whose reference score is >= ``conf_thres`` (the ones that become detections; elsewhere a
    flat DFL distribution lets tiny logit changes move a box that is never shown).

    ``dequantize=True`` runs the float-equivalent graph (:func:`dequantized_onnx`) instead of the
    original one; that isolates our conversion from ORT's run-time activation quantization.
    """
    import onnxruntime as ort
    import torch

    from yolo_ft.train.bn_calibration import letterbox, read_image

    onnx_path = Path(onnx_path)
    if dequantize:
        payload = dequantized_onnx(onnx_path).SerializeToString()
    else:
        payload = onnx_path.read_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 640
    model = model.float().eval()
    box = cls = rel = cbox = ccls = 0.0
    n_conf = 0
    with torch.no_grad():
        for p in images:
            x = letterbox(read_image(Path(p)), size)[None]
            ref = sess.run(None, {inp.name: x})[0]
            out = model(torch.from_numpy(x))
            ours = (out[0] if isinstance(out, (list, tuple)) else out).numpy()
            d = np.abs(ours - ref)
            box = max(box, float(d[:, :4].max()))
            cls = max(cls, float(d[:, 4:].max()))
            rel = max(rel, float(np.linalg.norm(ours - ref) / np.linalg.norm(ref)))
            conf = ref[0, 4:].max(axis=0) >= conf_thres  # anchors that would become detections
            n_conf += int(conf.sum())
            if conf.any():
                cbox = max(cbox, float(d[0, :4, conf].max()))
                ccls = max(ccls, float(d[0, 4:, conf].max()))
    return {
        "box_max_abs_px": box,
        "score_max_abs": cls,
        "rel_l2": rel,
        "conf_box_max_abs_px": cbox,
        "conf_score_max_abs": ccls,
        "conf_anchors": n_conf,
        "imgsz": size,
    }
