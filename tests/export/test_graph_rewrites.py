"""The upsample/1x1-conv commute (graph_rewrites): the rewritten graph computes the same numbers with the
upsample after a smaller convolution, only where that is exact, checked by running ONNX Runtime on both."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolo_ft.export.graph_rewrites import upsample_after_pointwise_conv
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
    assert report["graph_rewrites"]["upsample_after_pointwise_conv"] == []
    assert report["settings"]["graph_rewrites"] is False
    ops = lambda p: [n.op_type for n in onnx.load(str(p)).graph.node]  # noqa: E731
    assert ops(plain).count("Concat") == ops(rewritten).count("Concat") + 2
    x = to_blob([letterbox(load_image(split_images(tiny_yolo_dataset, "val")[0]), (128, 128))[0]])
    a, b = (_run(onnx.load(str(p)), {"images": x})[0] for p in (plain, rewritten))
    np.testing.assert_allclose(b[:, :4], a[:, :4], atol=1e-3)  # box pixels
    np.testing.assert_allclose(b[:, 4:], a[:, 4:], atol=1e-5)  # class scores
