"""The exact graph rewrites around int8 quantization: outputs must not change (padding) or must equal the
float SiLU quantized once (QuickGelu); checked by running ONNX Runtime on the graphs before and after."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolo_ft.export.data import split_images
from yolo_ft.export.int8_rewrites import pad_narrow_convs, silu_as_quickgelu
from yolo_ft.utils import onnx_graph


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _conv_silu_conv(mid: int, rng: np.random.Generator) -> onnx.ModelProto:
    """x(1,16,12,12) -> Conv 3x3 (16->mid) -> SiLU -> Conv 3x3 (mid->16): a YOLO bottleneck's shape."""
    w1 = numpy_helper.from_array(rng.normal(size=(mid, 16, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=mid).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(16, mid, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="cv1", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c1"], ["s1"], name="sig"),
        helper.make_node("Mul", ["c1", "s1"], ["a1"], name="mul"),
        helper.make_node("Conv", ["a1", "w2"], ["y"], name="cv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 12])], [w1, b1, w2],
        value_info=[helper.make_tensor_value_info("c1", TensorProto.FLOAT, [1, mid, 12, 12])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_padding_a_narrow_conv_keeps_the_output_and_widens_both_convs():
    rng = np.random.default_rng(0)
    model = _conv_silu_conv(8, rng)
    x = rng.normal(size=(1, 16, 12, 12)).astype(np.float32)
    before = _run(model, x)
    assert pad_narrow_convs(model) == ["cv1"]
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert init["w1"].shape == (16, 16, 3, 3) and init["b1"].shape == (16,) and init["w2"].shape == (16, 16, 3, 3)
    assert not np.any(init["w1"][8:]) and not np.any(init["w2"][:, 8:])
    assert "c1" not in {vi.name for vi in model.graph.value_info}  # stale (8-channel) shape dropped
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mid", [16, 12])
def test_convs_wide_enough_or_odd_sized_are_left_alone(mid):
    model = _conv_silu_conv(mid, np.random.default_rng(1))
    assert pad_narrow_convs(model) == []


def test_a_narrow_conv_whose_activation_feeds_a_non_conv_is_left_alone():
    model = _conv_silu_conv(8, np.random.default_rng(2))
    model.graph.output.append(helper.make_tensor_value_info("a1", TensorProto.FLOAT, None))
    model.graph.node.append(helper.make_node("Relu", ["a1"], ["r"], name="other"))
    assert pad_narrow_convs(model) == []


def _qdq_silu() -> onnx.ModelProto:
    """The QDQ SiLU ONNX Runtime's quantizer writes: DQ(a) -> Sigmoid -> Q -> DQ -> Mul(DQ(a), .) -> Q -> DQ."""
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "sa"), numpy_helper.from_array(np.array(128, np.uint8), "za"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "ss"), numpy_helper.from_array(np.array(0, np.uint8), "zs"),
        numpy_helper.from_array(np.array(0.03, np.float32), "sy"), numpy_helper.from_array(np.array(10, np.uint8), "zy"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "sa", "za"], ["a"], name="dq_a"),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sig"),
        helper.make_node("QuantizeLinear", ["s", "ss", "zs"], ["s_q"], name="q_s"),
        helper.make_node("DequantizeLinear", ["s_q", "ss", "zs"], ["s_dq"], name="dq_s"),
        helper.make_node("Mul", ["a", "s_dq"], ["m"], name="mul"),
        helper.make_node("QuantizeLinear", ["m", "sy", "zy"], ["m_q"], name="q_m"),
        helper.make_node("DequantizeLinear", ["m_q", "sy", "zy"], ["y"], name="dq_m"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", TensorProto.UINT8, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], inits,
                              value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 256])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_qdq_silu_becomes_one_quickgelu_that_rounds_once():
    model = _qdq_silu()
    q = np.arange(256, dtype=np.uint8)[None]
    lut = _run(model, q)
    assert silu_as_quickgelu(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["DequantizeLinear", "QuickGelu", "QuantizeLinear", "DequantizeLinear"]
    assert {t.name for t in model.graph.initializer} == {"sa", "za", "sy", "zy"}  # sigmoid's Q/DQ params gone
    onnx.checker.check_model(model)
    fused = _run(model, q)
    a = (q.astype(np.float32) - 128) * 0.05
    want = (np.clip(np.round(a / (1 + np.exp(-a)) / 0.03) + 10, 0, 255) - 10) * 0.03  # SiLU, quantized once
    np.testing.assert_allclose(fused, want, atol=1e-6)
    # The two-rounding LUT path is further from the exact SiLU (and never closer).
    assert np.abs(lut - want).max() > 0 and np.abs(fused - want).max() <= np.abs(lut - want).max()


def test_qdq_silu_on_a_large_or_unknown_size_tensor_stays_two_int8_ops():
    """Large maps keep the uint8 lookup path (4-byte float intermediates cost memory bandwidth there)."""
    model = _qdq_silu()
    assert silu_as_quickgelu(model, max_elements=255) == 0
    del model.graph.value_info[:]
    model.graph.value_info.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, "W"]))
    assert silu_as_quickgelu(model) == 0  # size unknown (dynamic width): not rewritten
    assert silu_as_quickgelu(model, max_elements=None) == 1


def test_a_symbolic_batch_dim_counts_as_one_image():
    model = _qdq_silu()
    del model.graph.value_info[:]
    model.graph.value_info.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 256]))
    assert silu_as_quickgelu(model, max_elements=256) == 1


def test_float_silu_is_not_touched():
    model = _conv_silu_conv(16, np.random.default_rng(3))
    assert silu_as_quickgelu(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "Sigmoid", "Mul", "Conv"]


def test_fast_int8_yolo_has_no_int8_sigmoid_left_and_tracks_fp32(fp32_export, tiny_yolo_dataset, tmp_path):
    """On the real exported YOLO11: every quantized SiLU became QuickGelu, the narrow bottleneck conv was
    padded, and the int8 model's scores stay near the fp32 model's on real images."""
    from yolo_ft.export.quantize import quantize_int8
    from yolo_ft.runtime import letterbox, load_image, to_blob

    out, _, _ = fp32_export
    imgs = split_images(tiny_yolo_dataset, "train")[:8]
    q = tmp_path / "int8.onnx"
    how = quantize_int8(out, q, imgs, (128, 128), scheme="fast")
    assert how["silu_as_quickgelu"] > 50
    assert how["padded_convs"] == ["/model.2/m.0/cv1/conv/Conv"]  # YOLO11n's only 8-channel conv
    model = onnx.load(str(q))
    producers = onnx_graph.producers(model.graph)
    for n in model.graph.node:  # a Sigmoid left must be float (its input not dequantized): head/first block
        if n.op_type == "Sigmoid":
            assert producers.get(n.input[0]) is None or producers[n.input[0]].op_type != "DequantizeLinear", n.name
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    init = {t.name: t for t in model.graph.initializer}
    w = convs["/model.2/m.0/cv1/conv/Conv"].input[1]
    w = producers[w].input[0] if w in producers else w  # the int8 weight behind its DequantizeLinear
    assert list(init[w].dims)[0] == 16

    x = to_blob([letterbox(load_image(p), (128, 128))[0] for p in imgs[:4]][:1])
    ref = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    r, g = ref.run(None, {"images": x})[0], got.run(None, {"images": x})[0]
    assert np.abs(g[:, 4:] - r[:, 4:]).mean() < 0.01  # class scores
