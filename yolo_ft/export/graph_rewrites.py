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

``split_into_producers``: every C3k2/C2PSA block starts with ``cv1(x).split((c, c), dim=1)``. Each output
channel of a convolution (and of the SiLU, Add and nearest upsample after it) depends only on its own slice of
the weights, so the Split becomes one smaller convolution per part:

    Split(SiLU(Conv(x; W, b)))[k]  ==  SiLU(Conv(x; W[rows k], b[rows k]))

The same multiply-adds, one Split fewer. What it saves is layout traffic: ONNX Runtime runs float convolutions
in a blocked channel layout (NCHWc) and its Split only in plain NCHW, so every Split cost a reorder out and one
or two reorders back in, and the Concat that reads the parts ran unblocked too. Equal up to float summation
order (YOLO11n at 640: boxes within 3e-4 px of 640); fp32 4-8 % faster on the project's 2-core machine
(bench/bench_graph_rewrites.py, bench/results/CPU_2026-12-04.md), int8 unchanged. Only chains of ops that act on each channel alone are
sliced, and only when nothing else reads their tensors.
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
        gone = {conv.output[0], cat.output[0], *(p.output[0] for p, lift in zip(parts, lifted) if lift)}
        _splice(g, conv.output[0], new, gone, stale=gone - {new[-1].output[0]})
        _drop_unused_initializers(g, {conv.input[1]})
        return conv.name
    return None


def _splice(g: onnx.GraphProto, at: str, new: list[onnx.NodeProto], gone: set[str], stale: set[str]) -> None:
    """Put ``new`` where the node whose first output is ``at`` was (all that ``new`` reads is made before it),
    drop the nodes whose first output is in ``gone`` and the recorded shapes of the ``stale`` tensors."""
    nodes = list(g.node)
    i = next(k for k, n in enumerate(nodes) if n.output[0] == at)
    before = [n for n in nodes[:i] if n.output[0] not in gone]
    after = [n for n in nodes[i + 1 :] if n.output[0] not in gone]
    del g.node[:]
    g.node.extend([*before, *new, *after])
    for vi in [vi for vi in g.value_info if vi.name in stale]:
        g.value_info.remove(vi)


def _drop_unused_initializers(g: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers named in ``candidates`` that no node reads any more."""
    used = {t for n in g.node for t in n.input}
    for t in [t for t in g.initializer if t.name in candidates - used]:
        g.initializer.remove(t)


def upsample_after_pointwise_conv(model: onnx.ModelProto) -> list[str]:
    """Apply the rewrite (module docstring) wherever it matches, in place; the names of the convs rewritten."""
    channels = _channels(model)
    done = []
    while (name := _rewrite_one(model, channels)) is not None:
        done.append(name)
    return done


_SLICEABLE = {"Conv", "Mul", "Sigmoid", "Add", "Resize"}


def _chain(tensor: str, inits: dict, made_by: dict, channels: dict, n: int,
           nodes: dict[str, onnx.NodeProto]) -> bool:
    """Collect into ``nodes`` the channel-wise ops that make ``tensor`` (n channels) from convolutions; False
    when some producer is not one whose output channels can be computed apart (a grouped conv, a Concat...)."""
    node = made_by.get(tensor)
    if node is None or node.op_type not in _SLICEABLE or channels.get(tensor) != n:
        return False
    nodes[node.output[0]] = node
    if node.op_type == "Conv":
        a = _attrs(node)
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        has_bias = len(node.input) > 2 and bool(node.input[2])
        return (a.get("group", 1) == 1 and w is not None and w.dims[0] == n
                and (not has_bias or node.input[2] in inits))
    if node.op_type == "Resize":
        return _is_spatial_nearest_upsample(node, inits, made_by) and _chain(
            node.input[0], inits, made_by, channels, n, nodes)
    # Sigmoid, Mul, Add: every input a full n-channel map made the same way (no broadcast of a constant)
    return all(_chain(t, inits, made_by, channels, n, nodes) for t in node.input)


def _emit_slice(tensor: str, lo: int, hi: int, tag: str, out: str | None, inits: dict,
                made_by: dict, new: list, init_out: list, memo: dict) -> str:
    """Append to ``new`` the nodes computing channels [lo, hi) of ``tensor``; the sliced tensor's name."""
    if tensor in memo:
        return memo[tensor]
    node = made_by[tensor]
    name = out or f"{tensor}.{tag}"
    if node.op_type == "Conv":
        w = numpy_helper.to_array(inits[node.input[1]])[lo:hi]
        ins = [node.input[0], f"{node.input[1]}.{tag}"]
        init_out.append(numpy_helper.from_array(np.ascontiguousarray(w), ins[1]))
        if len(node.input) > 2 and node.input[2]:
            ins.append(f"{node.input[2]}.{tag}")
            init_out.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[2]])[lo:hi], ins[2]))
    elif node.op_type == "Resize":
        ins = [_emit_slice(node.input[0], lo, hi, tag, None, inits, made_by, new, init_out, memo),
               *node.input[1:]]
    else:
        ins = [_emit_slice(t, lo, hi, tag, None, inits, made_by, new, init_out, memo) for t in node.input]
    sliced = helper.make_node(node.op_type, ins, [name], name=f"{node.name}.{tag}")
    sliced.attribute.extend(node.attribute)
    new.append(sliced)
    memo[tensor] = name
    return name


def _split_sizes(split: onnx.NodeProto, inits: dict, made_by: dict, n: int) -> list[int] | None:
    if len(split.input) > 1 and split.input[1]:
        sizes = _constant(split.input[1], inits, made_by)
        return None if sizes is None else [int(s) for s in sizes]
    parts = _attrs(split).get("num_outputs", len(split.output))
    return [n // parts] * parts if n % parts == 0 else None


def _push_one_split(model: onnx.ModelProto, channels: dict[str, int]) -> str | None:
    """Rewrite the first channel Split that can be pushed into its producers; its name, or None."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    made_by, read_by = onnx_graph.producers(g), onnx_graph.consumers(g)
    graph_outputs = {o.name for o in g.output}
    for split in g.node:
        if split.op_type != "Split" or _attrs(split).get("axis") != 1:
            continue
        n = channels.get(split.input[0])
        chain: dict[str, onnx.NodeProto] = {}
        if n is None or not _chain(split.input[0], inits, made_by, channels, n, chain):
            continue
        sizes = _split_sizes(split, inits, made_by, n)
        inside = set(chain) | {split.output[0]}  # nodes by their first output (unique in a graph)
        private = all(t not in graph_outputs and all(r.output[0] in inside for r in read_by.get(t, []))
                      for t in chain)
        if sizes is None or sum(sizes) != n or len(sizes) != len(split.output) or not private:
            continue
        new: list[onnx.NodeProto] = []
        added: list[onnx.TensorProto] = []
        lo = 0
        for k, (size, out) in enumerate(zip(sizes, split.output)):
            if out:  # an unused output may be left unnamed
                _emit_slice(split.input[0], lo, lo + size, f"part{k}", out, inits, made_by, new, added, {})
            lo += size
        _splice(g, split.output[0], new, inside, stale=set(chain))  # the chain's tensors are gone
        g.initializer.extend(added)
        _drop_unused_initializers(
            g, {t for c in chain.values() if c.op_type == "Conv" for t in c.input[1:]} | set(split.input[1:]))
        return split.name
    return None


def split_into_producers(model: onnx.ModelProto) -> list[str]:
    """Apply the Split rewrite (module docstring) wherever it matches, in place; the Splits removed."""
    done = []
    channels = _channels(model)
    while (name := _push_one_split(model, channels)) is not None:
        done.append(name)
    return done
