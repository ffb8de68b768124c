"""int8 export: calibrated on real images, gated on mAP50 against fp32 on the val split; a refused
export writes nothing; --force writes it and says so."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from yolo_ft.records import YoloFtError
from yolo_ft.utils import onnx_graph


def test_int8_export_is_quantized_and_gated(export_model, tiny_yolo_dataset, kidney_sizes, tmp_path):
    from yolo_ft.export.onnx import export
    from yolo_ft.runtime import Detector

    out = tmp_path / "int8.onnx"
    report = export(export_model, out, int8=True, calib=tiny_yolo_dataset, tolerance=1.0)
    gate = report["int8_gate"]
    assert gate["images"] == 8 and gate["split"] == "val"
    assert gate["drop"] == pytest.approx(gate["map50_fp32"] - gate["map50_int8"], abs=1e-4)
    assert gate["passed"] is True and gate["forced"] is False
    assert gate["attempts"][0]["scheme"] == "fastest"  # the fastest scheme is tried first
    assert report["quantization"]["calibration_images"] == 24  # every train image of the tiny set
    saved = json.loads(out.with_name("int8.onnx.json").read_text())
    assert saved["int8_gate"] == gate and saved["precision"] == "int8"
    # SiLU follows this CPU (auto): uint8 lookups without VNNI, QuickGelu on small maps with it
    from yolo_ft.export.int8_rewrites import silu_plan

    silu = report["quantization"]["silu"]
    limit, why = silu_plan("auto")
    assert silu == {"mode": "auto", "quickgelu_max_elements": limit, "why": why}
    quickgelus = sum(n.op_type == "QuickGelu" for n in onnx.load(str(out)).graph.node)
    assert quickgelus == report["quantization"]["silu_as_quickgelu"] and (quickgelus > 0) == (limit > 0)

    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) > 50  # per-channel int8 conv weights
    # In QDQ form a quantized conv is still a Conv node, but its input and weight come from DequantizeLinear.
    producers, consumers = onnx_graph.producers(model.graph), onnx_graph.consumers(model.graph)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    float_convs = {n.name for n in convs if n.input[1] not in producers
                   or producers[n.input[1]].op_type != "DequantizeLinear"}
    # "fastest": only the 3-channel first conv (quicker than int8 there) and C2PSA's attention stay float ...
    assert {n for n in float_convs if "/attn/" not in n} == {"/model.0/conv/Conv"}
    # ... and the head's last convs are int8 with outputs of their own scale, dequantized before the float
    # concat/DFL/sigmoid: box coordinates and class scores never share one int8 grid (the 0-mAP failure).
    for name in ("/model.23/cv3.0/cv3.0.2/Conv", "/model.23/cv2.0/cv2.0.2/Conv"):
        conv = next(n for n in convs if n.name == name)
        (q,) = consumers[conv.output[0]]
        assert q.op_type == "QuantizeLinear"
        assert {c.op_type for c in consumers[q.output[0]]} == {"DequantizeLinear"}
        dq = consumers[q.output[0]][0]
        after = consumers[dq.output[0]]  # the head's float reshape/concat
        assert after and all(n.op_type in ("Reshape", "Concat") and n.name.startswith("/model.23/") for n in after)
    # A head branch's inner conv and its SiLU are int8: DequantizeLinear -> QuickGelu -> QuantizeLinear, or
    # (lookups) a quantized Sigmoid and Mul, each between DequantizeLinear and QuantizeLinear.
    for op in ("QuickGelu",) if limit else ("Sigmoid", "Mul"):
        silu = next(n for n in model.graph.node if n.op_type == op and "/cv3.0/cv3.0.1/" in n.name)
        assert producers[silu.input[0]].op_type == "DequantizeLinear"
        assert {c.op_type for c in consumers[silu.output[0]]} == {"QuantizeLinear"}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["names"] == "{0: 'KIDNEY_STONE'}" and meta["yolo_ft_precision"] == "int8"

    # It still detects what fp32 detects on a real image (same class, overlapping boxes).
    det8 = Detector(out).predict(str(kidney_sizes["512x512"]), conf=0.001)[0]
    assert len(det8) > 0 and set(det8.class_name) == {"KIDNEY_STONE"}
    assert report["parity"]["agreement_iou50"] >= 0.5


def test_int8_gate_refuses_and_writes_nothing(export_model, tiny_yolo_dataset, tmp_path):
    from yolo_ft.export.onnx import export

    out_dir = tmp_path / "deploy"
    out_dir.mkdir()
    with pytest.raises(YoloFtError, match=r"int8 export refused: mAP50 drops .* tolerance -1.0; nothing was written"):
        export(export_model, out_dir / "model.onnx", int8=True, calib=tiny_yolo_dataset, tolerance=-1.0)
    assert list(out_dir.iterdir()) == []  # no .onnx, no .json, no temp folder


def test_int8_force_writes_and_records_it(export_model, tiny_yolo_dataset, tmp_path):
    from yolo_ft.cli import main

    out = tmp_path / "forced.onnx"
    rc = main(["export", "--model", str(export_model), "--out", str(out), "--int8", "--calib",
               str(tiny_yolo_dataset), "--tolerance", "-1", "--force"])
    assert rc == 0 and out.is_file()
    gate = json.loads(out.with_name("forced.onnx.json").read_text())["int8_gate"]
    assert gate["passed"] is False and gate["forced"] is True
    assert [a["scheme"] for a in gate["attempts"]] == ["fastest", "fast", "broad", "conv"]  # all tried first


def test_int8_needs_calibration_data(export_model, tmp_path):
    from yolo_ft.cli import main

    rc = main(["export", "--model", str(export_model), "--out", str(tmp_path / "m.onnx"), "--int8"])
    assert rc == 2 and not (tmp_path / "m.onnx").exists()


def test_fp16_gpu_target_runs_on_cpu_within_stated_tolerance(export_model, tiny_yolo_dataset, kidney_sizes, tmp_path):
    import onnxruntime as ort

    from yolo_ft.export.parity import TOLERANCES
    from yolo_ft.runtime import Detector

    from yolo_ft.export.onnx import export

    out = tmp_path / "fp16.onnx"
    report = export(export_model, out, target="gpu", calib=tiny_yolo_dataset)
    par = report["parity"]
    assert report["precision"] == "fp16" and par["passed"]
    # checked on the provider it targets when this onnxruntime has it (CUDA), else on the CPU, and says which
    expect = "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() else "CPUExecutionProvider"
    assert par["provider"] == expect
    tol = TOLERANCES["fp16"]
    assert par["tolerance"] == {"iou": tol.iou, "conf": tol.conf, "judged_from_conf": tol.min_conf}
    assert par["matched_judged"] > 0 and par["borderline_unmatched"] < par["matched"]
    assert par["max_conf_delta"] <= tol.conf and par["min_matched_iou"] >= tol.iou
    model = onnx.load(str(out))
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer) > 50
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"  # fp32 IO: callers need not know
    d16 = Detector(out, providers=["CPUExecutionProvider"]).predict(str(kidney_sizes["1236x1001"]), conf=0.05)[0]
    assert len(d16) > 0 and d16.xyxy.dtype == np.float32


def test_bad_inputs_are_named(tmp_path, export_model):
    from yolo_ft.export.onnx import export

    with pytest.raises(YoloFtError, match="nope.pt: checkpoint not found"):
        export(tmp_path / "nope.pt", tmp_path / "m.onnx")
    with pytest.raises(YoloFtError, match="must end in .onnx"):
        export(export_model, tmp_path / "m.txt")
    with pytest.raises(YoloFtError, match="missing.yaml: calibration data.yaml not found"):
        export(export_model, tmp_path / "m.onnx", int8=True, calib=tmp_path / "missing.yaml")
    assert list(tmp_path.iterdir()) == []


def test_fp16_check_that_judges_nothing_says_so(export_model, kidney_sizes, tmp_path, caplog, monkeypatch):
    """When no box reaches the judged confidence (an under-trained model; here a floor of 0.999), the check
    must not pass silently: the report and the log say it judged nothing."""
    import logging

    from yolo_ft.export import parity
    from yolo_ft.export.onnx import export

    monkeypatch.setitem(parity.TOLERANCES, "fp16", parity.Tolerance(iou=0.95, conf=2e-2, min_conf=0.999))
    with caplog.at_level(logging.WARNING, logger="yolo_ft"):
        report = export(export_model, tmp_path / "fp16.onnx", target="gpu", check_images=[kidney_sizes["512x512"]])
    par = report["parity"]
    assert par["boxes_reference"] > 0 and par["matched_judged"] == 0 and "judged nothing" in par["note"]
    assert "judged nothing" in caplog.text and "--check-images" in caplog.text


def test_export_cli_gpu_target_states_the_fp16_rule(export_model, kidney_sizes, tmp_path, capsys):
    from yolo_ft.cli import main

    out = tmp_path / "m16.onnx"
    rc = main(["export", "--model", str(export_model), "--out", str(out), "--target", "gpu",
               "--check-images", str(kidney_sizes["512x512"]), str(kidney_sizes["1236x1001"])])
    text = capsys.readouterr().out
    report = json.loads(out.with_name("m16.onnx.json").read_text())
    assert rc == 0 and "(fp16," in text
    assert f"({report['parity']['matched_judged']} at confidence >= 0.1 judged)" in text
