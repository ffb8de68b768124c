"""`yolo-ft eval`: a .pt and its exported .onnx are scored by the same validator, on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bus_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ultralytics' real bus.jpg labelled with the bundled COCO model's own confident boxes (bus + persons).

    A model scored on labels it produced itself must reach mAP50 ~1: this pins the evaluator's
    plumbing (class ids, coordinates, splits) without needing a trained model.
    """
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from yolo_ft.train.weights import bundled_weights

    root = tmp_path_factory.mktemp("bus")
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    shutil.copy(ASSETS / "bus.jpg", root / "images" / "val" / "bus.jpg")
    res = YOLO(str(bundled_weights())).predict(str(ASSETS / "bus.jpg"), conf=0.5, verbose=False)[0]
    lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, (x, y, w, h) in
             zip(res.boxes.cls.tolist(), res.boxes.xywhn.tolist())]
    assert len(lines) >= 4  # bus + people
    (root / "labels" / "val" / "bus.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in res.names.items())
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return root / "data.yaml"


def test_eval_pt_and_onnx_agree(bus_dataset: Path, tmp_path: Path):
    from yolo_ft.evaluate import evaluate
    from yolo_ft.export import export
    from yolo_ft.train.weights import bundled_weights

    pt = evaluate(bundled_weights(), bus_dataset, imgsz=320)
    assert pt["mAP50"] > 0.8
    assert set(pt["per_class_ap50"]) >= {"bus", "person"}

    onnx = tmp_path / "coco.onnx"
    export(bundled_weights(), onnx, target="cpu", imgsz=320, calib=bus_dataset)
    ox = evaluate(onnx, bus_dataset)
    assert ox["imgsz"] == 320  # read from the model's metadata, not Ultralytics' 640 default
    assert abs(ox["mAP50"] - pt["mAP50"]) < 0.02
    assert abs(ox["mAP50-95"] - pt["mAP50-95"]) < 0.05


def test_eval_cli_errors_and_json(bus_dataset: Path, tmp_path: Path, capsys):
    from yolo_ft.cli import main
    from yolo_ft.train.weights import bundled_weights

    assert main(["eval", "--model", str(tmp_path / "missing.pt"), "--data", str(bus_dataset)]) == 2
    assert "missing.pt: model not found" in capsys.readouterr().err
    out = tmp_path / "m.json"
    assert main(["eval", "--model", str(bundled_weights()), "--data", str(bus_dataset), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mAP50"] > 0.9
