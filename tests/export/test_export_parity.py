"""fp32 export of a real trained model: the exporter's own check, its provenance file, the metadata that
makes YOLO("model.onnx") work, and agreement of yolo_ft.runtime with YOLO(best.pt).predict on real
kidney-stone CT images of different sizes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from yolo_ft.export.parity import TOLERANCES, Tolerance, compare


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_fp32_export_checks_parity_and_records_provenance(fp32_export, tiny_yolo_dataset):
    out, report, pt = fp32_export
    assert out.is_file()
    saved = json.loads(out.with_name("model.onnx.json").read_text())
    assert saved["source"]["sha256"] == _sha256(pt)
    assert saved["onnx_sha256"] == _sha256(out)  # the report names the exact model file it describes
    assert saved["source"]["train_data"] == str(tiny_yolo_dataset) and saved["source"]["train_epochs"] == 2
    assert "metrics/mAP50(B)" in saved["source"]["train_metrics"]
    assert saved["classes"] == {"0": "KIDNEY_STONE"}
    assert saved["imgsz"] == 128 and saved["precision"] == "fp32" and saved["stride"] == 32
    assert saved["versions"]["onnxruntime"] and saved["versions"]["ultralytics"]
    par = saved["parity"]
    # The check ran on real val images of the dataset, with many boxes (conf 0.001), and every box matched.
    assert par["image_source"].startswith(str(tiny_yolo_dataset))
    assert len(par["images"]) == 8 and all(Path(p).is_file() for p in par["images"])
    assert par["boxes_reference"] >= 64
    assert par["unmatched_reference"] == 0 and par["unmatched_onnx"] == 0
    assert par["matched"] >= par["boxes_reference"] - par["borderline_unmatched"]
    assert par["min_matched_iou"] >= 0.99 and par["max_conf_delta"] <= 1e-3
    assert par["passed"] is True and par["provider"] == "CPUExecutionProvider"
    # The model carries the same report in its metadata (all but the figures about the file itself),
    # and the runtime reads it without torch.
    from yolo_ft.runtime import Detector

    embedded = Detector(out, providers=["CPUExecutionProvider"]).export_report
    assert embedded == {k: v for k, v in saved.items() if k not in ("onnx_sha256", "size_bytes", "seconds")}
    # Nothing but the model and its report is left in the output folder (no temp dirs, no .pt copies).
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_unreadable_export_report_does_not_stop_the_model(fp32_export, kidney_sizes, tmp_path, caplog):
    import logging

    from yolo_ft.runtime import Detector
    from yolo_ft.runtime.detector import EXPORT_REPORT_KEY

    out, _, _ = fp32_export
    model = onnx.load(str(out))
    next(p for p in model.metadata_props if p.key == EXPORT_REPORT_KEY).value = '{"precision": "fp32", trunc'
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with caplog.at_level(logging.WARNING, logger="yolo_ft"):
        det = Detector(bad, providers=["CPUExecutionProvider"])
    assert det.export_report is None and "unreadable yolo_ft_export metadata" in caplog.text and "bad.onnx" in caplog.text
    good = Detector(out, providers=["CPUExecutionProvider"]).predict(str(kidney_sizes["512x512"]), conf=0.01)[0]
    np.testing.assert_array_equal(det.predict(str(kidney_sizes["512x512"]), conf=0.01)[0].xyxy, good.xyxy)


def test_metadata_lets_ultralytics_load_the_onnx(fp32_export, kidney_sizes):
    from ultralytics import YOLO

    out, _, pt = fp32_export
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["names"] == "{0: 'KIDNEY_STONE'}"
    assert meta["imgsz"] == "[128, 128]" and meta["stride"] == "32" and meta["task"] == "detect"
    assert meta["yolo_ft_source_sha256"] == _sha256(pt)
    img = str(kidney_sizes["512x512"])
    via_onnx = YOLO(str(out)).predict(img, conf=0.001, verbose=False)[0]
    via_pt = YOLO(str(pt)).predict(img, conf=0.001, verbose=False)[0]
    assert via_onnx.names == {0: "KIDNEY_STONE"}
    assert len(via_onnx.boxes) == len(via_pt.boxes) > 0
    np.testing.assert_allclose(via_onnx.boxes.conf.numpy(), via_pt.boxes.conf.numpy(), atol=1e-3)


@pytest.mark.parametrize("size", ["512x512", "1236x1001", "888x719"])
def test_runtime_agrees_with_ultralytics_pt_predict(fp32_export, kidney_sizes, size):
    """Same image through Detector(model.onnx) and the user's usual YOLO(best.pt).predict call.

    At imgsz 128 the letterbox pad of these images is < stride, so Ultralytics' default rect letterbox and
    the fixed-shape square one coincide: the two must agree to the fp32 tolerance.
    """
    from ultralytics import YOLO

    from yolo_ft.runtime import Detector

    out, _, pt = fp32_export
    img = kidney_sizes[size]
    r = YOLO(str(pt)).predict(str(img), conf=0.001, verbose=False)[0]
    d = Detector(out).predict(str(img), conf=0.001)[0]
    ref = [(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(np.int64))]
    got = [(d.xyxy, d.confidence, d.class_id)]
    res = compare(ref, got, TOLERANCES["fp32"], conf_thres=0.001)
    assert res["boxes_reference"] > 5
    assert res["passed"], res
    assert res["min_matched_iou"] >= 0.99 and res["max_conf_delta"] <= 1e-3
    h, w = r.orig_shape
    assert f"{w}x{h}" == size
    assert d.xyxy.dtype == np.float32 and (d.xyxy[:, [0, 2]] <= w).all() and (d.xyxy[:, [1, 3]] <= h).all()
    assert d.class_name == ["KIDNEY_STONE"] * len(d) and d.image == str(img)


def test_runtime_batch_paths_and_arrays_agree(fp32_export, kidney_sizes):
    import cv2

    from yolo_ft.runtime import Detector

    out, _, _ = fp32_export
    det = Detector(out, providers=["CPUExecutionProvider"])
    paths = [str(p) for p in kidney_sizes.values()]
    one_by_one = [det.predict(p, conf=0.01)[0] for p in paths]
    batch = det.predict([cv2.imread(p) for p in paths], conf=0.01)
    assert len(batch) == 3
    for a, b in zip(one_by_one, batch):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        assert b.image is None
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        det.predict("missing.jpg")


def test_runtime_is_safe_to_share_between_threads(fp32_export, kidney_sizes):
    """The runtime reuses its input buffer between calls; threads calling one Detector must not share it."""
    from concurrent.futures import ThreadPoolExecutor

    from yolo_ft.runtime import Detector

    out, _, _ = fp32_export
    det = Detector(out, providers=["CPUExecutionProvider"])
    paths = [str(p) for p in kidney_sizes.values()]
    expected = {p: det.predict(p, conf=0.01)[0] for p in paths}
    assert sum(len(d) for d in expected.values()) > 0
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: (p, det.predict(p, conf=0.01)[0]), paths * 8))
    for p, d in got:
        np.testing.assert_array_equal(d.xyxy, expected[p].xyxy)
        np.testing.assert_array_equal(d.confidence, expected[p].confidence)
    # memory stays bounded however many threads called, and a single caller reuses one buffer
    assert 1 <= len(det._spare) <= 2
    kept = det._spare[-1]
    det.predict(paths[0], conf=0.01)
    assert any(b is kept for b in det._spare)


def test_runtime_feeds_a_float16_input_model_without_a_conversion_pass(fp32_export, kidney_sizes, tmp_path):
    """A model whose input is float16 (e.g. Ultralytics' ``half=True`` export) gets its input letterboxed
    straight into a float16 buffer: the network sees float16(x / 255), and the detections equal those of
    the fp32 model fed those same rounded pixels."""
    from onnx import TensorProto, helper

    from yolo_ft.runtime import Detector

    out, _, _ = fp32_export
    model = onnx.load(str(out))
    graph = model.graph
    name = graph.input[0].name
    for node in graph.node:  # every reader of the input now reads its float32 cast
        node.input[:] = [f"{name}_f32" if t == name else t for t in node.input]
    graph.node.insert(0, helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT))
    graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    half_in = tmp_path / "half_input.onnx"
    onnx.save(model, str(half_in))

    det16 = Detector(half_in, providers=["CPUExecutionProvider"])
    assert det16.input_dtype == np.float16
    img = str(kidney_sizes["1236x1001"])
    got = det16.predict([img, img], conf=0.01)  # a list: the spare buffer is reused, in float16
    assert det16._spare and det16._spare[0].dtype == np.float16

    det32 = Detector(out, providers=["CPUExecutionProvider"])
    rounded = {}
    real_run = det32.session.run

    def run_rounded(names, feeds):  # the fp32 model fed float16-rounded pixels
        x = feeds[det32.input_name]
        rounded["x"] = x.astype(np.float16).astype(np.float32)
        return real_run(names, {det32.input_name: rounded["x"]})

    det32.session = type("S", (), {"run": staticmethod(run_rounded)})()
    ref = det32.predict(img, conf=0.01)[0]
    assert len(ref) > 0
    for d in got:
        np.testing.assert_array_equal(d.xyxy, ref.xyxy)
        np.testing.assert_array_equal(d.confidence, ref.confidence)


def test_dynamic_export_matches_pt_predict_rect_letterbox(export_model, tiny_yolo_dataset, kidney_sizes, tmp_path):
    """A dynamic-shape model gets Ultralytics' minimum-rectangle letterbox, as YOLO(best.pt).predict does:
    at imgsz 256 a 1236x1001 image runs at 256x224 (not 256x256) and still matches PyTorch exactly."""
    import cv2
    from ultralytics import YOLO

    from yolo_ft.export.onnx import export
    from yolo_ft.runtime import Detector

    out = tmp_path / "dyn.onnx"
    report = export(export_model, out, dynamic=True, imgsz=256, calib=tiny_yolo_dataset)
    assert report["parity"]["passed"] and report["settings"]["dynamic"] is True
    det = Detector(out, providers=["CPUExecutionProvider"])
    assert det.dynamic_batch and det.dynamic_hw and det.imgsz == (256, 256)
    img = str(kidney_sizes["1236x1001"])
    r = YOLO(str(export_model)).predict(img, imgsz=256, conf=0.001, verbose=False)[0]
    d = det.predict(img, conf=0.001)[0]
    res = compare([(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(np.int64))],
                  [(d.xyxy, d.confidence, d.class_id)], TOLERANCES["fp32"], conf_thres=0.001)
    assert res["passed"] and res["boxes_reference"] > 5, res

    # Batching: same-shape images share one run; mixed shapes still give the per-image results.
    a = cv2.imread(img)
    b = cv2.flip(a, 1)
    small = cv2.imread(str(kidney_sizes["512x512"]))
    batched = det.predict([a, b, small], conf=0.01)
    single = [det.predict(x, conf=0.01)[0] for x in (a, b, small)]
    for x, y in zip(single, batched):
        assert len(x) == len(y)
        np.testing.assert_allclose(x.xyxy, y.xyxy, atol=1e-3)
        np.testing.assert_allclose(x.confidence, y.confidence, atol=1e-5)


def test_compare_flags_a_shifted_box_and_tolerates_borderline_ones():
    """The check can fail: a box moved by 2 px (IoU < 0.99) is a mismatch; one only just under the
    threshold on the other side is borderline."""
    ref_boxes = np.array([[10, 10, 110, 110], [200, 200, 260, 260]], np.float32)
    ref = [(ref_boxes, np.array([0.9, 0.0105], np.float32), np.array([0, 0]))]
    moved = ref_boxes.copy()
    moved[0] += 2
    bad = compare(ref, [(moved[:1], np.array([0.9], np.float32), np.array([0]))], Tolerance(0.99, 1e-3), 0.01)
    assert not bad["passed"] and bad["unmatched_reference"] == 1 and bad["borderline_unmatched"] == 1
    ok = compare(ref, [(ref_boxes[:1], np.array([0.9004], np.float32), np.array([0]))], Tolerance(0.99, 1e-3), 0.01)
    assert ok["passed"] and ok["matched"] == 1 and ok["borderline_unmatched"] == 1
    conf_off = compare(ref, [(ref_boxes, np.array([0.9, 0.0125], np.float32), np.array([0, 0]))], Tolerance(0.99, 1e-3), 0.01)
    assert not conf_off["passed"] and conf_off["max_conf_delta"] == pytest.approx(0.002, abs=1e-6)


def test_fp16_tolerance_judges_confident_boxes_only():
    """Below Tolerance.min_conf a box may move or vanish (flat DFL distribution); at or above it, it may not."""
    box = np.array([[10, 10, 60, 60]], np.float32)
    moved = box + np.array([[8, 0, 8, 0]], np.float32)  # IoU 0.72: a mismatch at any stated IoU
    tol = Tolerance(iou=0.95, conf=2e-2, min_conf=0.1)
    weak = compare([(box, np.array([0.04], np.float32), np.array([0]))],
                   [(moved, np.array([0.045], np.float32), np.array([0]))], tol, 0.001)
    assert weak["passed"] and weak["borderline_unmatched"] == 2 and weak["matched_judged"] == 0
    assert not compare([(box, np.array([0.04], np.float32), np.array([0]))],
                       [(moved, np.array([0.045], np.float32), np.array([0]))], Tolerance(0.95, 2e-2), 0.001)["passed"]
    strong = compare([(box, np.array([0.5], np.float32), np.array([0]))],
                     [(moved, np.array([0.5], np.float32), np.array([0]))], tol, 0.001)
    assert not strong["passed"] and strong["unmatched_reference"] == 1 and strong["unmatched_onnx"] == 1
    # a weak pair that matches is counted but not judged: its confidence gap does not fail the check
    gap = compare([(box, np.array([0.01], np.float32), np.array([0]))],
                  [(box, np.array([0.05], np.float32), np.array([0]))], tol, 0.001)
    assert gap["passed"] and gap["matched"] == 1 and gap["matched_judged"] == 0 and gap["min_matched_iou"] is None


def test_fixed_batch_export_pads_the_last_batch(export_model, tiny_yolo_dataset, kidney_sizes, fp32_export, tmp_path):
    """--batch 2 gives a graph that only takes 2 images: 3 images run as 2 + (1 + a grey filler)."""
    from yolo_ft.cli import main
    from yolo_ft.runtime import Detector

    out = tmp_path / "b2.onnx"
    assert main(["export", "--model", str(export_model), "--out", str(out), "--batch", "2",
                 "--calib", str(tiny_yolo_dataset)]) == 0
    det = Detector(out)
    assert det.fixed_batch == 2 and det.session.get_inputs()[0].shape == [2, 3, 128, 128]
    paths = [str(p) for p in kidney_sizes.values()]
    got = det.predict(paths, conf=0.01)
    ref = Detector(fp32_export[0]).predict(paths, conf=0.01)
    assert len(got) == 3
    for a, b in zip(ref, got):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
