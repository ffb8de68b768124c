"""`yolo-ft predict`: JSON format, files/dirs/globs, .onnx through the runtime and .pt through Ultralytics
agreeing, annotated images; clear errors for bad sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _images(kidney_sizes, tmp_path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    names = list(kidney_sizes.values())
    shutil.copy2(names[0], d / names[0].name)
    shutil.copy2(names[1], d / "sub" / names[1].name)
    shutil.copy2(names[2], tmp_path / "single.jpg")
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_cli_json_onnx_and_pt_agree(fp32_export, kidney_sizes, tmp_path):
    from yolo_ft.cli import main

    out, _, pt = fp32_export
    d = _images(kidney_sizes, tmp_path)
    sources = [str(d), str(tmp_path / "single.jpg"), str(d / "*.jpg")]  # the glob repeats a file: deduplicated
    assert main(["predict", "--model", str(out), *sources, "--conf", "0.01", "--out", str(tmp_path / "o.json"),
                 "--draw", str(tmp_path / "drawn")]) == 0
    assert main(["predict", "--model", str(pt), *sources, "--conf", "0.01", "--out", str(tmp_path / "p.json")]) == 0
    onnx_res = json.loads((tmp_path / "o.json").read_text())
    pt_res = json.loads((tmp_path / "p.json").read_text())
    assert len(onnx_res) == 3 and [r["image"] for r in onnx_res] == [r["image"] for r in pt_res]
    assert sum(len(r["detections"]) for r in onnx_res) > 0
    for o, p in zip(onnx_res, pt_res):
        assert set(o) == {"image", "detections"}
        for det in o["detections"]:
            assert set(det) == {"xyxy", "confidence", "class_id", "class_name"}
            assert len(det["xyxy"]) == 4 and det["class_name"] == "KIDNEY_STONE" and det["class_id"] == 0
            assert 0.01 < det["confidence"] <= 1
        assert len(o["detections"]) == len(p["detections"])
        np.testing.assert_allclose([x["confidence"] for x in o["detections"]],
                                   [x["confidence"] for x in p["detections"]], atol=1e-3)
        np.testing.assert_allclose([x["xyxy"] for x in o["detections"]], [x["xyxy"] for x in p["detections"]],
                                   atol=0.5)
    drawn = sorted((tmp_path / "drawn").iterdir())
    assert len(drawn) == 3
    for r in onnx_res:
        a, b = cv2.imread(r["image"]), cv2.imread(str(tmp_path / "drawn" / Path(r["image"]).name))
        assert a.shape == b.shape
        assert (np.abs(a.astype(int) - b).sum() > 0) == bool(r["detections"])  # boxes drawn iff detections


def test_predict_cli_errors_name_the_source(fp32_export, tmp_path):
    out, _, _ = fp32_export
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "predict", "--model", str(out), str(tmp_path / "nope.jpg")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "nope.jpg: no such file or directory" in r.stderr
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not really a jpeg")
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "predict", "--model", str(out), str(bad)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "broken.jpg: not a readable image" in r.stderr
    assert "Traceback" not in r.stderr
