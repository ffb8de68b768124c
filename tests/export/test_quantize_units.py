"""int8 quantization internals on a real exported model: shared-scale groups, chunked calibration, and the
QDQ graph they produce (the properties ONNX Runtime's fast paths depend on)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from yolo_ft.export.data import split_images
from yolo_ft.utils import onnx_graph


def _qparams(model: onnx.ModelProto) -> tuple[dict, dict]:
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = onnx_graph.producers(model.graph)
    return init, producers


def test_chunked_reader_hands_out_every_batch_once_in_small_passes(fp32_export, tiny_yolo_dataset):
    from yolo_ft.export.quantize import _Chunked, _Reader

    images = split_images(tiny_yolo_dataset, "train")[:7]
    chunked = _Chunked(_Reader(images, (64, 64), "images", 1), 3)
    passes = []
    while chunked.more():
        got = []
        while (item := chunked.get_next()) is not None:
            got.append(item["images"])
        passes.append(got)
    assert [len(p) for p in passes] == [3, 3, 1]
    ref = [b["images"] for b in iter(_Reader(images, (64, 64), "images", 1).get_next, None)]
    np.testing.assert_array_equal(np.concatenate([x for p in passes for x in p]), np.concatenate(ref))


def test_percentile_ranges_sit_inside_minmax_ranges(fp32_export, tiny_yolo_dataset, tmp_path):
    from yolo_ft.export.quantize import _Reader, calibrate_ranges

    out, _, _ = fp32_export
    images = split_images(tiny_yolo_dataset, "train")[:6]
    reader = _Reader(images, (128, 128), "images", 1)
    mm = calibrate_ranges(out, reader, tmp_path / "a.onnx", "MinMax")
    pc = calibrate_ranges(out, reader, tmp_path / "b.onnx", "Percentile")
    common = set(mm) & set(pc)
    assert len(common) > 100
    assert all(mm[t][0] - 1e-4 <= pc[t][0] and pc[t][1] <= mm[t][1] + 1e-4 for t in common)
    assert any(pc[t][1] < mm[t][1] - 1e-3 for t in common)  # some outliers were clipped
    assert not list(tmp_path.iterdir())  # the augmented calibration model is cleaned up


def test_concat_inputs_share_the_output_scale(fp32_export, tiny_yolo_dataset, tmp_path):
    from yolo_ft.export.quantize import quantize_int8, shared_scale_groups

    out, _, _ = fp32_export
    groups = shared_scale_groups(out, set(), ("Concat", "Split", "MaxPool", "Resize"))
    # YOLO11n: a C3k2 block's Split outputs and its Concat output are one group; so are SPPF's MaxPools.
    c3k2 = next(g for g in groups if "/model.2/Concat_output_0" in g)
    assert {"/model.2/Split_output_0", "/model.2/Split_output_1"} <= set(c3k2)
    assert any("/model.9/m/MaxPool_output_0" in g for g in groups)

    q = tmp_path / "int8.onnx"
    how = quantize_int8(out, q, split_images(tiny_yolo_dataset, "train")[:8], (128, 128), scheme="fast")
    assert how["shared_scale_groups"] >= 8 and "Percentile" in how["activations"]
    model = onnx.load(str(q))
    init, producers = _qparams(model)
    checked = 0
    for n in model.graph.node:
        if n.op_type != "Concat" or not n.input or producers.get(n.input[0]) is None:
            continue
        if producers[n.input[0]].op_type != "DequantizeLinear":
            continue  # a float concat (head decode)
        consumer = next(c for c in model.graph.node if n.output[0] in c.input)
        assert consumer.op_type == "QuantizeLinear"
        scale_out, zp_out = init[consumer.input[1]], init[consumer.input[2]]
        for t in n.input:
            dq = producers[t]
            assert init[dq.input[1]] == scale_out and init[dq.input[2]] == zp_out, (n.name, t)
        checked += 1
    assert checked >= 8


def test_schemes_keep_decode_float_and_differ_only_where_stated(fp32_export):
    """Every scheme keeps the DFL and the head's concat float; 'fastest' differs from 'fast' only in the
    Detect branches' last convs (box and class logits), which 'fast' keeps float."""
    from yolo_ft.export.quantize import SCHEMES, nodes_to_exclude

    graph = onnx.load(str(fp32_export[0])).graph
    final_convs = {n.name for n in graph.node if n.op_type == "Conv" and n.name.startswith("/model.23/")
                   and n.name.split("/")[-2].endswith(".2") and n.name.split("/")[2].startswith(("cv2.", "cv3."))}
    assert len(final_convs) == 6  # box + class conv at each of 3 levels
    kept = {s: set(nodes_to_exclude(graph, s)) for s in SCHEMES}
    for s, names in kept.items():
        assert any("/dfl/" in n for n in names), s
        assert {n.name for n in graph.node if n.op_type == "Concat" and n.name.startswith("/model.23/")} <= names, s
    assert kept["fast"] - kept["fastest"] == final_convs
    assert kept["fastest"] < kept["fast"]
    assert not final_convs & kept["fastest"]
