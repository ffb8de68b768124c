"""The exact graph rewrites (graph_rewrites): the upsample/1x1-conv commute and the Split pushed into its
producers compute the same numbers with fewer or smaller ops, only where that is exact, checked by running
ONNX Runtime on both graphs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolo_ft.export.graph_rewrites import split_into_producers, upsample_after_pointwise_conv
from yolo_ft.utils import onnx_graph


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _neck(kernel: int = 1, mode: str = "nearest", extra_reader: bool = False, order: str = "up-first",
          by_sizes: bool = False):
    """a(1,4,5,6) -> Resize x2 -> Concat with b(1,3,10,12) -> Conv kxk (7->5) + bias -> y: YOLO's neck."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(5, 7, kernel, kernel)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=5).astype(np.float32), "bias")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    cat_in = ["up", "b"] if order == "up-first" else ["b", "up"]
    sizes = numpy_helper.from_array(np.array([1, 4, 10, 12], np.int64), "sizes")
    nodes = [
        helper.make_node("Resize", ["a", "", "", "sizes"] if by_sizes else ["a", "", "scales"], ["up"],
                         name="/m.11/Resize", mode=mode,
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Concat", cat_in, ["cat"], name="/m.12/Concat", axis=1),
        helper.make_node("Conv", ["cat", "w", "bias"], ["y"], name="/m.13/cv1/conv/Conv",
                         kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 10, 12])]
    if extra_reader:  # the upsampled map is read elsewhere too: it must stay
        nodes.append(helper.make_node("Relu", ["up"], ["z"], name="other"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 10, 12]))
    graph = helper.make_graph(
        nodes, "neck",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 5, 6]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 10, 12])],
        outputs, [w, bias, scales, sizes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


FEEDS = {"a": np.random.default_rng(1).normal(size=(1, 4, 5, 6)).astype(np.float32),
         "b": np.random.default_rng(2).normal(size=(1, 3, 10, 12)).astype(np.float32)}


@pytest.mark.parametrize("order", ["up-first", "up-second"])
def test_rewrite_is_exact_and_moves_the_upsample_after_a_smaller_conv(order):
    model = _neck(order=order)
    before = _run(model, FEEDS)[0]
    assert upsample_after_pointwise_conv(model) == ["/m.13/cv1/conv/Conv"]
    onnx.checker.check_model(model, full_check=True)
    after = _run(model, FEEDS)[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in model.graph.node]
    assert "Concat" not in ops and ops.count("Conv") == 2 and ops.count("Add") == 1
    made_by = onnx_graph.producers(model.graph)
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    low = made_by[resize.input[0]]  # the upsample now reads a conv over `a` at 5x6, with `a`'s 4 channels
    assert low.op_type == "Conv" and low.input[0] == "a"
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert weights[low.input[1]].shape == (5, 4, 1, 1)
    assert "w" not in weights  # the original weight is gone, only its two slices remain
    assert sum("bias" in n.input for n in model.graph.node) == 1  # the bias is added once


@pytest.mark.parametrize("case", [dict(kernel=3), dict(mode="linear"), dict(extra_reader=True), dict(by_sizes=True)])
def test_rewrite_leaves_inexact_cases_alone(case):
    """A 3x3 conv mixes neighbours, a linear upsample interpolates, a shared upsample must stay, and a
    Resize to fixed ``sizes`` names the old channel count."""
    model = _neck(**case)
    before = model.SerializeToString()
    assert upsample_after_pointwise_conv(model) == []
    assert model.SerializeToString() == before


def test_exported_yolo11_is_rewritten_and_still_matches_pytorch(fp32_export):
    """Both of YOLO11's upsample -> concat -> C3k2 joints are rewritten, and the checked export (boxes
    IoU >= 0.99, |conf delta| <= 1e-3 against PyTorch) still passed."""
    out, report, _ = fp32_export
    assert report["graph_rewrites"]["upsample_after_pointwise_conv"] == [
        "/model.13/cv1/conv/Conv", "/model.16/cv1/conv/Conv"]
    assert json.loads(out.with_name("model.onnx.json").read_text())["graph_rewrites"] == report["graph_rewrites"]
    graph = onnx.load(str(out)).graph
    made_by = onnx_graph.producers(graph)
    for n in graph.node:
        if n.op_type == "Resize":  # every upsample now follows a conv; none feeds a concat
            assert made_by[n.input[0]].op_type == "Conv"
    blocks = ["/model.2", "/model.4", "/model.6", "/model.8", "/model.10", "/model.13", "/model.16", "/model.19",
              "/model.22"]  # every C3k2 and the C2PSA: their cv1 Split became two convs
    assert report["graph_rewrites"]["split_into_producers"] == [f"{b}/Split" for b in blocks]
    assert [n.name for n in graph.node if n.op_type == "Split"] == ["/model.10/m/m.0/attn/Split"]  # q, k, v
    assert report["parity"]["passed"] and report["parity"]["max_conf_delta"] <= 1e-3
    assert ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_outputs()[0].shape[1] == 5


def test_no_graph_rewrites_keeps_ultralytics_graph_with_the_same_outputs(fp32_export, tiny_yolo_dataset, tmp_path):
    """``graph_rewrites=False`` (``--no-graph-rewrites``) writes the neck as Ultralytics exports it; on a real
    image both graphs give the same raw head output up to float summation order."""
    from yolo_ft.export.onnx import export
    from yolo_ft.export.data import split_images
    from yolo_ft.runtime import letterbox, load_image, to_blob

    rewritten, _, pt = fp32_export
    plain = tmp_path / "plain.onnx"
    report = export(pt, plain, calib=tiny_yolo_dataset, graph_rewrites=False)
    assert report["graph_rewrites"] == {"upsample_after_pointwise_conv": [], "split_into_producers": []}
    assert report["settings"]["graph_rewrites"] is False
    ops = lambda p: [n.op_type for n in onnx.load(str(p)).graph.node]  # noqa: E731
    assert ops(plain).count("Concat") == ops(rewritten).count("Concat") + 2
    assert ops(plain).count("Split") == ops(rewritten).count("Split") + 9
    x = to_blob([letterbox(load_image(split_images(tiny_yolo_dataset, "val")[0]), (128, 128))[0]])
    a, b = (_run(onnx.load(str(p)), {"images": x})[0] for p in (plain, rewritten))
    np.testing.assert_allclose(b[:, :4], a[:, :4], atol=1e-3)  # box pixels
    np.testing.assert_allclose(b[:, 4:], a[:, 4:], atol=1e-5)  # class scores


def _c3k2_head(group: int = 1, extra_reader: bool = False, axis: int = 1, with_neck: bool = False):
    """x(1,4,6,6) -> Conv 1x1 (4->6) + bias -> SiLU -> Split [2, 4] -> (y0, y1); y1 -> Conv 3x3 -> z: how every
    C3k2 block starts. ``with_neck``: the conv reads YOLO's upsample/concat joint (see _neck) first."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(6, 4 // group, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "cb"),
             numpy_helper.from_array(rng.normal(size=(3, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([2, 4] if axis == 1 else [3, 3], np.int64), "parts")]
    nodes, inputs = [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])]
    src = "x"
    if with_neck:  # a(1,1,3,3) upsampled x2 beside b(1,3,6,6): the conv's 4 channels come from both
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        nodes += [helper.make_node("Resize", ["a", "", "scales"], ["up"], name="/m.11/Resize", mode="nearest"),
                  helper.make_node("Concat", ["up", "b"], ["x"], name="/m.12/Concat", axis=1)]
        inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 1, 3, 3]),
                  helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 6, 6])]
    nodes += [
        helper.make_node("Conv", [src, "w", "cb"], ["c"], name="/m.2/cv1/conv/Conv", kernel_shape=[1, 1], group=group),
        helper.make_node("Sigmoid", ["c"], ["s"], name="/m.2/cv1/act/Sigmoid"),
        helper.make_node("Mul", ["c", "s"], ["a1"], name="/m.2/cv1/act/Mul"),
        helper.make_node("Split", ["a1", "parts"], ["y0", "y1"], name="/m.2/Split", axis=axis),
        helper.make_node("Conv", ["y1", "w2"], ["z"], name="/m.2/m.0/Conv", kernel_shape=[3, 3], pads=[1] * 4),
    ]
    y0_shape = [1, 2, 6, 6] if axis == 1 else [1, 6, 3, 6]
    outputs = [helper.make_tensor_value_info("y0", TensorProto.FLOAT, y0_shape),
               helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 6, 6])]
    if extra_reader:  # the activation is read by something else too: it must stay whole
        nodes.append(helper.make_node("Relu", ["a1"], ["r"], name="other"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 6, 6, 6]))
    graph = helper.make_graph(nodes, "c3k2", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


SPLIT_FEEDS = {"x": np.random.default_rng(4).normal(size=(1, 4, 6, 6)).astype(np.float32)}
NECK_FEEDS = {"a": np.random.default_rng(5).normal(size=(1, 1, 3, 3)).astype(np.float32),
              "b": np.random.default_rng(6).normal(size=(1, 3, 6, 6)).astype(np.float32)}


def test_split_becomes_one_conv_per_part_with_the_same_numbers():
    model = _c3k2_head()
    before = _run(model, SPLIT_FEEDS)
    assert split_into_producers(model) == ["/m.2/Split"]
    onnx.checker.check_model(model, full_check=True)
    after = _run(model, SPLIT_FEEDS)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in model.graph.node]
    assert "Split" not in ops and ops.count("Conv") == 3 and ops.count("Sigmoid") == ops.count("Mul") == 2
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    made_by = onnx_graph.producers(model.graph)
    sigmoid_of = lambda t: made_by[made_by[t].input[0]]  # noqa: E731  y = Mul(conv, Sigmoid(conv))
    rows = [weights[sigmoid_of(y).input[1]].shape[0] for y in ("y0", "y1")]
    assert rows == [2, 4]  # each part's conv computes only its own channels
    np.testing.assert_array_equal(weights[sigmoid_of("y1").input[2]], weights["cb.part1"])
    assert {"w", "cb", "parts"}.isdisjoint(weights)  # the whole weight and the split sizes are gone


def test_split_is_pushed_through_the_upsample_commute_too():
    """After upsample_after_pointwise_conv the Split reads SiLU(Add(Up(Conv(a)), Conv(b))): still per channel."""
    model = _c3k2_head(with_neck=True)
    before = _run(model, NECK_FEEDS)
    assert upsample_after_pointwise_conv(model) == ["/m.2/cv1/conv/Conv"]
    assert split_into_producers(model) == ["/m.2/Split"]
    onnx.checker.check_model(model, full_check=True)
    for a, b in zip(_run(model, NECK_FEEDS), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in model.graph.node]
    assert "Split" not in ops and ops.count("Resize") == 2 and ops.count("Add") == 2


@pytest.mark.parametrize("case", [dict(group=2), dict(extra_reader=True), dict(axis=2)])
def test_split_rewrite_leaves_other_cases_alone(case):
    """A grouped conv mixes its parts' inputs differently, a shared activation must stay whole, and a
    spatial split is not per channel."""
    model = _c3k2_head(**case)
    before = model.SerializeToString()
    assert split_into_producers(model) == []
    assert model.SerializeToString() == before
