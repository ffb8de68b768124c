"""Re-running updates in place; a second model (.pt or the exported .onnx) gets its own field."""

from __future__ import annotations

import shutil
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from review_matching import match_image, read_gt_pixels

from yolo_ft.records import YoloFtError
from yolo_ft.review.api import review
from yolo_ft.review.yolo_data import label_path_for

NAME = "yolo-ft-test-rerun"


def test_rerun_updates_in_place_and_models_get_own_fields(tiny_yolo_dataset, review_model, tiny_trained_model):
    first = review(tiny_yolo_dataset, review_model, name=NAME, conf=0.01, launch=False, progress=False)
    ds = fo.load_dataset(NAME)
    ids_before = sorted(ds.values("id"))
    assert first.ingest["added"] == 8 and first.summary.pred_boxes > 0

    # same model, higher threshold: same samples (ids kept), same field, contents replaced
    again = review(tiny_yolo_dataset, review_model, name=NAME, conf=0.03, launch=False, progress=False)
    ds.reload()
    assert again.pred_field == first.pred_field and again.eval_key == first.eval_key
    assert again.ingest == {"added": 0, "updated": 8, "removed": 0, "samples": 8, "gt_boxes": 9}
    assert sorted(ds.values("id")) == ids_before and len(set(ds.values("filepath"))) == len(ds) == 8
    confs = [c for cs in ds.values(f"{first.pred_field}.detections.confidence") for c in cs]
    assert confs and min(confs) >= 0.03
    assert len(confs) == again.summary.pred_boxes < first.summary.pred_boxes
    assert again.summary.tp + again.summary.fn == 9
    assert ds.list_evaluations().count(first.eval_key) == 1

    # a different model file: its own prediction field and evaluation, the first one untouched
    other = review(tiny_yolo_dataset, tiny_trained_model, name=NAME, conf=0.01, launch=False, progress=False)
    ds.reload()
    assert other.pred_field != first.pred_field and other.eval_key != first.eval_key
    assert {first.pred_field, other.pred_field} <= set(ds.get_field_schema())
    assert {first.eval_key, other.eval_key} <= set(ds.list_evaluations())
    assert [c for cs in ds.values(f"{first.pred_field}.detections.confidence") for c in cs] == confs
    assert len(ds) == 8
    assert set(other.views).isdisjoint(again.views) and set(other.views) <= set(ds.list_saved_views())


def test_rerun_follows_changes_on_disk(tiny_yolo_dataset, review_model, tmp_path):
    """An image removed from the split disappears; an edited label file replaces the ground truth."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_yolo_dataset.parent, root)
    data = root / "data.yaml"
    data.write_text(tiny_yolo_dataset.read_text().replace(str(tiny_yolo_dataset.parent), str(root)))
    review(data, review_model, name="yolo-ft-test-disk", conf=0.05, launch=False, progress=False)
    images = sorted((root / "images" / "val").iterdir())
    images[-1].unlink()
    label_path_for(images[0]).write_text("0 0.5 0.5 0.2 0.1\n0 0.25 0.25 0.1 0.1\n")
    res = review(data, review_model, name="yolo-ft-test-disk", conf=0.05, launch=False, progress=False)
    ds = fo.load_dataset("yolo-ft-test-disk")
    assert res.ingest["removed"] == 1 and len(ds) == 7
    s = ds.match(fo.ViewField("filepath") == str(images[0].resolve())).first()
    got = np.array(sorted(d.bounding_box for d in s.ground_truth.detections))
    np.testing.assert_allclose(got, [[0.2, 0.2, 0.1, 0.1], [0.4, 0.45, 0.2, 0.1]], atol=1e-9)


def test_same_folder_name_elsewhere_gets_its_own_dataset(tiny_yolo_dataset, review_model, tmp_path):
    """Two datasets in folders of the same name never share samples: the default name gets qualified,
    an explicit --name that belongs to the other one is refused."""
    import json

    from yolo_ft.review import write_review_report

    names = []
    for i in range(2):
        root = tmp_path / f"run{i}" / "dataset"
        shutil.copytree(tiny_yolo_dataset.parent, root)
        (root / "data.yaml").write_text(tiny_yolo_dataset.read_text().replace(str(tiny_yolo_dataset.parent), str(root)))
        res = write_review_report(root / "data.yaml", review_model, tmp_path / f"run{i}" / "review", conf=0.05)
        json.dumps(res)  # the demo pipeline stores it in demo.json
        assert Path(res["report"]) == tmp_path / f"run{i}" / "review" / "index.html" and Path(res["report"]).is_file()
        names.append(res["dataset"])
    assert names[0] != names[1] and all(n.startswith("yolo-ft-dataset-") and n.endswith("-val") for n in names)
    assert len(fo.load_dataset(names[0])) == len(fo.load_dataset(names[1])) == 8
    assert not set(fo.load_dataset(names[0]).values("filepath")) & set(fo.load_dataset(names[1]).values("filepath"))
    with pytest.raises(YoloFtError, match="pass --name"):
        review(tmp_path / "run1" / "dataset" / "data.yaml", review_model, name=names[0], launch=False, progress=False)


def test_onnx_model_is_reviewed_through_the_runtime(tiny_yolo_dataset, review_model, tmp_path):
    """The exported model goes through yolo_ft.runtime.Detector; its counts agree with an independent match."""
    from ultralytics import YOLO

    from yolo_ft.runtime import Detector

    onnx_path = Path(YOLO(str(review_model)).export(format="onnx", imgsz=256, simplify=False, dynamic=True))
    onnx_copy = tmp_path / "model.onnx"
    shutil.copy(onnx_path, onnx_copy)
    pt = review(tiny_yolo_dataset, review_model, name="yolo-ft-test-onnx", conf=0.01, launch=False, progress=False)
    ox = review(tiny_yolo_dataset, onnx_copy, name="yolo-ft-test-onnx", conf=0.01, launch=False, progress=False)
    assert ox.pred_field.startswith("pred_model_") and ox.pred_field != pt.pred_field
    ds = fo.load_dataset("yolo-ft-test-onnx")
    det = Detector(onnx_copy)
    names = det.names
    total = np.zeros(3, dtype=int)
    for sample in ds:
        d = det.predict(sample.filepath, conf=0.01, iou=0.7)[0]
        preds = [(b, float(c), n) for b, c, n in zip(d.xyxy, d.confidence, d.class_name, strict=True)]
        gts = read_gt_pixels(Path(sample.filepath), label_path_for(Path(sample.filepath)), names)
        m = match_image(gts, preds)
        k = ox.eval_key
        assert (sample[f"{k}_tp"], sample[f"{k}_fp"], sample[f"{k}_fn"]) == m.counts()
        total += m.counts()
    assert ox.summary.tp + ox.summary.fn == 9 and tuple(total) == (ox.summary.tp, ox.summary.fp, ox.summary.fn)
    # same weights, two runtimes: the same objects are found (letterbox padding may move a box slightly)
    assert abs(ox.summary.tp - pt.summary.tp) <= 1
