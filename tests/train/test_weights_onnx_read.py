"""Reading ONNX weights beyond the bundled file: per-channel dequantization (axis checked), other
scales and class counts (a real yolo11s export with 3 classes), and the shared-bias trap of onnxslim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolo_ft.records import YoloFtError
from yolo_ft.train.onnx_import import compare_with_onnx, import_onnx_model, infer_scale, read_onnx_weights


def _per_channel_model(path: Path, scale: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """A one-conv QDQ graph: int8 weight (4, 3, 1, 1) dequantized per channel by DequantizeLinear."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(4, 3, 1, 1), dtype=np.int8)
    zp = np.array([0, 1, -2, 3], dtype=np.int8)[: scale.size]
    inits = [
        numpy_helper.from_array(q, "model.0.conv.weight_quantized"),
        numpy_helper.from_array(scale.astype(np.float32), "model.0.conv.weight_scale"),
        numpy_helper.from_array(zp, "model.0.conv.weight_zero_point"),
        numpy_helper.from_array(np.arange(4, dtype=np.float32), "model.0.conv.bias"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["model.0.conv.weight_quantized", "model.0.conv.weight_scale",
                                              "model.0.conv.weight_zero_point"], ["w"], axis=axis),
        helper.make_node("Conv", ["images", "w", "model.0.conv.bias"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return q, zp


def test_per_channel_weights_are_dequantized_along_the_output_axis(tmp_path: Path):
    scale = np.array([0.5, 0.25, 0.125, 2.0], dtype=np.float32)
    q, zp = _per_channel_model(tmp_path / "pc.onnx", scale, axis=0)
    w = read_onnx_weights(tmp_path / "pc.onnx").tensors["model.0.conv.weight"]
    expected = (q.astype(np.float32) - zp.reshape(4, 1, 1, 1)) * scale.reshape(4, 1, 1, 1)
    np.testing.assert_array_equal(w, expected)
    assert read_onnx_weights(tmp_path / "pc.onnx").tensors["model.0.conv.bias"].tolist() == [0, 1, 2, 3]


def test_a_scale_that_does_not_fit_its_axis_is_a_clear_error(tmp_path: Path):
    _per_channel_model(tmp_path / "bad.onnx", np.array([0.5, 0.25, 0.125], dtype=np.float32), axis=0)
    with pytest.raises(YoloFtError, match=r"model\.0\.conv\.weight_quantized.*3 does not match axis 0"):
        read_onnx_weights(tmp_path / "bad.onnx")


def test_non_yolo_onnx_is_rejected_by_name(tmp_path: Path):
    _per_channel_model(tmp_path / "one_conv.onnx", np.array([0.5, 0.25, 0.125, 2.0], dtype=np.float32), axis=0)
    with pytest.raises(YoloFtError, match=r"layer 0 has 4 channels: not a YOLO11"):
        import_onnx_model(tmp_path / "one_conv.onnx")


def test_float_yolo11s_export_with_3_classes_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real Ultralytics ONNX export (float, BN fused, onnxslim) of a 3-class yolo11s: the scale and
    class names are inferred, and eval output equals onnxruntime's. Random init makes many biases
    identical (all zero), which onnxslim merges into one initializer: biases must follow the graph."""
    import torch

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import ASSETS

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    m = DetectionModel("yolo11s.yaml", nc=3, verbose=False)
    m.names = {0: "stone", 1: "cyst", 2: "tumor"}
    torch.save({"model": m.half(), "train_args": {"task": "detect"}, "epoch": -1, "ema": None}, tmp_path / "s3.pt")
    exported = Path(YOLO(str(tmp_path / "s3.pt")).export(format="onnx", imgsz=96, simplify=True, opset=12, verbose=False))
    tensors = read_onnx_weights(exported).tensors
    assert infer_scale(tensors) == "s"
    model, scale = import_onnx_model(exported)
    assert scale == "s" and model.names == {0: "stone", 1: "cyst", 2: "tumor"}
    assert model.model[-1].nc == 3
    diff = compare_with_onnx(model, exported, [Path(ASSETS) / "bus.jpg"])
    assert diff["imgsz"] == 96 and diff["rel_l2"] < 1e-4 and diff["score_max_abs"] < 1e-4, diff
