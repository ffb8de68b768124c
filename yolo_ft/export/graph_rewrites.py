"""Exact graph rewrites applied to every exported model (fp32, fp16 and, through the fp32 graph, int8).

``upsample_after_pointwise_conv``: YOLO11's neck upsamples a low-resolution map (nearest neighbour, 2x),
concatenates it with a high-resolution one and feeds the concatenation to a 1x1 convolution (C3k2's cv1).
A 1x1 convolution is pointwise, so it commutes with nearest-neighbour upsampling, and a convolution of a
concatenation is the sum of convolutions of its parts:

    Conv1x1(Concat(Up(a), b); W, bias)  ==  Up(Conv1x1(a; W_a)) + Conv1x1(b; W_b, bias)

The low-resolution part then runs on 4x fewer pixels, the upsample moves fewer channels and the
concatenated tensor is never written. Equal in exact arithmetic; in float32 only the summation order
changes (YOLO11n at 640: boxes within 2e-4 px, scores within 3e-7). Measured on this project's 2-core
machine (bench/results/CPU_2026-11-28.md): fp32 YOLO11n at 640 3.3-4 % faster, int8 2 % faster.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from yolo_ft.utils import onnx_graph


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_pointwise(conv: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    """A plain 1x1 convolution (stride 1, no padding, no groups) with constant weights."""
    if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in initializers:
        return False
    a = _attrs(conv)
    return (list(initializers[conv.input[1]].dims[2:]) == [1, 1] and a.get("group", 1) == 1
            and all(s == 1 for s in a.get("strides", [1, 1])) and not any(a.get("pads", []))
            and all(d == 1 for d in a.get("dilations", [1, 1])))


def _constant(name: str, initializers: dict[str, onnx.TensorProto], made_by: dict) -> np.ndarray | None:
    """The value of an initializer or Constant-node output, else None."""
    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = made_by.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _is_spatial_nearest_upsample(
    node: onnx.NodeProto | None, initializers: dict[str, onnx.TensorProto], made_by: dict
) -> bool:
    """A nearest-neighbour Resize by constant scales that leave batch and channels alone. Nearest resizing
    only copies pixels, so any per-pixel op commutes with it; a ``sizes`` input would pin the channel count."""
    if node is None or node.op_type != "Resize" or _attrs(node).get("mode", b"nearest") != b"nearest":
        return False
    if len(node.input) < 3 or not node.input[2] or (len(node.input) > 3 and node.input[3]):
        return False
    scales = _constant(node.input[2], initializers, made_by)
    return scales is not None and scales.shape == (4,) and scales[0] == 1 and scales[1] == 1


def _channels(model: onnx.ModelProto) -> dict[str, int]:
    """Static channel count (axis 1) of every 4-D tensor shape inference can tell."""
    g = shape_inference.infer_shapes(model).graph
    out = {}
    for vi in [*g.value_info, *g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            out[vi.name] = dims[1].dim_value
    return out


def _rewrite_one(model: onnx.ModelProto, channels: dict[str, int]) -> str | None:
    """Rewrite the first matching Conv1x1(Concat(..., Up(a), ...)); its name, or None when none is left."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    made_by, read_by = onnx_graph.producers(g), onnx_graph.consumers(g)
    graph_outputs = {o.name for o in g.output}

    def only_read_by_one(node: onnx.NodeProto) -> bool:  # its output feeds one node and is no graph output
        return len(read_by.get(node.output[0], [])) == 1 and node.output[0] not in graph_outputs

    for conv in g.node:
        if not _is_pointwise(conv, inits):
            continue
        cat = made_by.get(conv.input[0])
        if cat is None or cat.op_type != "Concat" or _attrs(cat).get("axis") != 1 or not only_read_by_one(cat):
            continue
        parts = [made_by.get(t) for t in cat.input]
        lifted = [_is_spatial_nearest_upsample(p, inits, made_by) and only_read_by_one(p) for p in parts]
        sizes = [channels.get(t) for t in cat.input]
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if not any(lifted) or None in sizes or sum(sizes) != weight.shape[1]:
            continue
        base = conv.name.rsplit("/", 1)[0] if "/" in conv.name else conv.name
        new, sums, start = [], [], 0
        for k, (tensor, size, part, lift) in enumerate(zip(cat.input, sizes, parts, lifted)):
            w = f"{conv.input[1]}.part{k}"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight[:, start : start + size]), w))
            start += size
            bias = [conv.input[2]] if k == 0 and len(conv.input) > 2 and conv.input[2] else []
            out = f"{base}/Conv_part{k}_output_0"
            new.append(helper.make_node("Conv", [part.input[0] if lift else tensor, w, *bias], [out],
                                        name=f"{base}/Conv_part{k}", kernel_shape=[1, 1]))
            if lift:  # the same Resize (scales/sizes, modes), now after the convolution
                up = helper.make_node("Resize", [out, *part.input[1:]], [f"{base}/Resize_part{k}_output_0"],
                                      name=f"{base}/Resize_part{k}")
                up.attribute.extend(part.attribute)
                new.append(up)
                out = up.output[0]
            sums.append(out)
        for k in range(1, len(sums)):
            dst = conv.output[0] if k == len(sums) - 1 else f"{base}/Add_part{k}_output_0"
            new.append(helper.make_node("Add", [sums[k - 1] if k == 1 else new[-1].output[0], sums[k]], [dst],
                                        name=f"{base}/Add_part{k}"))
        name, weight_name = conv.name, conv.input[1]
        gone = {conv.output[0], cat.output[0], *(p.output[0] for p, lift in zip(parts, lifted) if lift)}
        nodes = list(g.node)
        at = next(i for i, n in enumerate(nodes) if n.output[0] == conv.output[0])
        before = [n for n in nodes[:at] if n.output[0] not in gone]
        after = [n for n in nodes[at + 1 :] if n.output[0] not in gone]
        del g.node[:]
        g.node.extend([*before, *new, *after])  # where the conv was: all that `new` reads is made before it
        stale = [vi for vi in g.value_info if vi.name in gone - {new[-1].output[0]}]
        for vi in stale:
            g.value_info.remove(vi)
        if not any(weight_name in n.input for n in g.node):
            g.initializer.remove(inits[weight_name])
        return name
    return None


def upsample_after_pointwise_conv(model: onnx.ModelProto) -> list[str]:
    """Apply the rewrite (module docstring) wherever it matches, in place; the names of the convs rewritten."""
    channels = _channels(model)
    done = []
    while (name := _rewrite_one(model, channels)) is not None:
        done.append(name)
    return done
