"""Exact graph rewrites around int8 quantization that ONNX Runtime's CPU kernels run faster.

Neither changes what the model computes: padding adds zero channels that contribute nothing, and
QuickGelu(alpha=1) *is* SiLU (x * sigmoid(x)), computed once in float instead of as two int8 ops.

Measured on this project's 2-core AVX512-VNNI machine, YOLO11n at 640 (bench/results/CPU_2026-11-28.md;
on an AVX2-only CPU the SiLU rewrite loses, see silu_plan):

* ``silu_as_quickgelu``: ORT has no int8 SiLU; a QDQ SiLU runs as QLinearSigmoid + QLinearMul (two
  passes over uint8, with requantization). DequantizeLinear -> QuickGelu -> QuantizeLinear is one float
  op and rounds once instead of three times, but moves 4-byte floats: it wins while they stay in cache and
  loses on large maps once the host's memory bandwidth is contended (this VM alternates between phases
  where every float op takes ~1.7x as long). Hence only tensors up to QUICKGELU_MAX_ELEMENTS (1 MiB of
  float) are rewritten: fp32/int8 1.49 -> 1.58 in the quiet phase and 1.62 -> 1.61 in the busy one,
  where rewriting every SiLU gave 1.56 and 1.43. ORT only fuses Sigmoid+Mul into QuickGelu in float
  graphs (in a QDQ graph it splits the DQ that feeds both), so the fused node is written here.
* ``pad_narrow_convs``: MLAS's int8 convolution kernels are slow for fewer than 16 output channels
  (YOLO11n's first bottleneck, 16 -> 8 channels at 160x160: 0.33 ms, longer than the 8 -> 16 conv after
  it). Zero-padding its output to 16 channels, and the next conv's input to match, saves ~0.25 ms.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yolo_ft.utils import onnx_graph

MIN_CHANNELS = 16
QUICKGELU_MAX_ELEMENTS = 1 << 18  # 1 MiB of float32: e.g. 40x40x128 is rewritten, 80x80x64 is not
SILU_MODES = ("auto", "lookup", "quickgelu")


def silu_plan(mode: str = "auto", dot_product: str | None = None) -> tuple[int, str]:
    """How int8 SiLUs are written: (``max_elements`` for :func:`silu_as_quickgelu`, 0 = none; why).

    ``auto`` follows the exporting CPU, where the model is usually benchmarked and often deployed: with
    int8 dot-product instructions (VNNI) QuickGelu on cache-sized maps was faster (module docstring); on an
    AVX2-only CPU (bench/results/CPU_2026-12-04.md) the uint8 lookups were faster at every map size and the
    whole model 6-8 % faster without any QuickGelu. ``dot_product``: the CPU flag (see utils.cpu), looked up
    when not given.
    """
    if mode not in SILU_MODES:
        raise ValueError(f"int8 SiLU mode '{mode}': choose one of {', '.join(SILU_MODES)}")
    if mode == "lookup":
        return 0, "asked for: every SiLU as uint8 QLinearSigmoid + QLinearMul"
    if mode == "quickgelu":
        return QUICKGELU_MAX_ELEMENTS, f"asked for: QuickGelu on maps up to {QUICKGELU_MAX_ELEMENTS} elements"
    if dot_product is None:
        from yolo_ft.utils.cpu import int8_dot_product

        dot_product = int8_dot_product()
    if dot_product == "":
        return 0, "auto: this CPU has no int8 dot-product instructions (no VNNI), where uint8 lookups are faster"
    how = f"has {dot_product}" if dot_product else "could not be identified"
    return QUICKGELU_MAX_ELEMENTS, f"auto: this CPU {how}; QuickGelu on maps up to {QUICKGELU_MAX_ELEMENTS} elements"


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _silu_output(conv_out: str, consumers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The output of the float SiLU (Sigmoid + Mul) that alone consumes ``conv_out``, else None."""
    users = consumers.get(conv_out, [])
    sig = [n for n in users if n.op_type == "Sigmoid"]
    mul = [n for n in users if n.op_type == "Mul"]
    if len(users) != 2 or len(sig) != 1 or len(mul) != 1:
        return None
    if set(mul[0].input) != {conv_out, sig[0].output[0]} or len(consumers.get(sig[0].output[0], [])) != 1:
        return None
    return mul[0].output[0]


def pad_narrow_convs(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS) -> list[str]:
    """Zero-pad float Conv -> SiLU -> Conv chains whose middle has < ``min_channels`` (a multiple of 8)
    channels; returns the padded convs' names. In place; the outputs are unchanged (the extra channels
    are SiLU(0) = 0 and meet zero weights)."""
    g = model.graph
    init = {t.name: t for t in g.initializer}
    consumers = onnx_graph.consumers(g)
    shared = {t for t, users in consumers.items() if len(users) > 1}
    padded, stale = [], set()
    for conv in g.node:
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in init or _attr(conv, "group", 1) != 1:
            continue
        w = numpy_helper.to_array(init[conv.input[1]])
        cout = w.shape[0]
        if cout >= min_channels or cout % 8:
            continue
        act = _silu_output(conv.output[0], consumers)
        nxt = consumers.get(act, []) if act else []
        if not nxt or any(n.op_type != "Conv" or n.input[0] != act or _attr(n, "group", 1) != 1
                          or n.input[1] not in init or n.input[1] in shared for n in nxt):
            continue
        bias = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if conv.input[1] in shared or (bias and (bias in shared or bias not in init)):
            continue  # a weight another node also reads, or a bias computed at run time
        extra = min_channels - cout
        init[conv.input[1]].CopyFrom(numpy_helper.from_array(
            np.concatenate([w, np.zeros((extra, *w.shape[1:]), w.dtype)]), conv.input[1]))
        if bias:
            b = numpy_helper.to_array(init[bias])
            init[bias].CopyFrom(numpy_helper.from_array(np.concatenate([b, np.zeros(extra, b.dtype)]), bias))
        for n in nxt:
            w2 = numpy_helper.to_array(init[n.input[1]])
            init[n.input[1]].CopyFrom(numpy_helper.from_array(
                np.concatenate([w2, np.zeros((w2.shape[0], extra, *w2.shape[2:]), w2.dtype)], axis=1), n.input[1]))
        stale |= {conv.output[0], act} | {o for u in consumers[conv.output[0]] for o in u.output}
        padded.append(conv.name)
    if stale:  # the shapes recorded for the widened tensors are wrong now; let consumers re-infer them
        keep = [vi for vi in g.value_info if vi.name not in stale]
        del g.value_info[:]
        g.value_info.extend(keep)
    return padded


def _numel(model: onnx.ModelProto) -> dict[str, int]:
    """Elements per image of every tensor whose shape the graph records (a symbolic batch dim counts as 1)."""
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = list(vi.type.tensor_type.shape.dim)
        sizes = [d.dim_value if d.HasField("dim_value") else (1 if i == 0 else 0) for i, d in enumerate(dims)]
        if sizes and all(sizes):
            out[vi.name] = int(np.prod(sizes))
    return out


def silu_as_quickgelu(model: onnx.ModelProto, max_elements: int | None = QUICKGELU_MAX_ELEMENTS) -> int:
    """Replace each QDQ SiLU — Sigmoid(a) -> Q -> DQ -> Mul(a, .) on a dequantized ``a`` — by one
    com.microsoft.QuickGelu(a, alpha=1), on tensors of known size up to ``max_elements`` elements (None:
    every one). In place; returns how many were replaced."""
    g = model.graph
    numel = _numel(model) if max_elements is not None else {}
    consumers = onnx_graph.consumers(g)
    producers = onnx_graph.producers(g)
    drop: set[int] = set()
    replace: dict[int, onnx.NodeProto] = {}
    for sig in g.node:
        if sig.op_type != "Sigmoid":
            continue
        a = sig.input[0]
        if producers.get(a) is None or producers[a].op_type != "DequantizeLinear":
            continue
        q = consumers.get(sig.output[0], [])
        if len(q) != 1 or q[0].op_type != "QuantizeLinear":
            continue
        dq = consumers.get(q[0].output[0], [])
        if len(dq) != 1 or dq[0].op_type != "DequantizeLinear":
            continue
        mul = consumers.get(dq[0].output[0], [])
        if len(mul) != 1 or mul[0].op_type != "Mul" or set(mul[0].input) != {a, dq[0].output[0]}:
            continue
        if max_elements is not None and numel.get(mul[0].output[0], max_elements + 1) > max_elements:
            continue
        fused = helper.make_node("QuickGelu", [a], [mul[0].output[0]], name=sig.name + "_silu",
                                 domain="com.microsoft", alpha=1.0)
        replace[id(mul[0])] = fused  # at the Mul's position, so the node list stays topologically sorted
        drop |= {id(sig), id(q[0]), id(dq[0])}
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(nodes)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    used = {t for n in g.node for t in n.input}
    keep = [t for t in g.initializer if t.name in used]  # the dropped Q/DQ's scales and zero points
    del g.initializer[:]
    g.initializer.extend(keep)
    return len(replace)
