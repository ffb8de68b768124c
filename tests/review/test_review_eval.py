"""`review` on real data and a real fine-tuned model, checked against an independent count.

Predictions are recomputed here with plain Ultralytics and ground truth is read from the label files,
then matched by tests/review/review_matching.py (pixels, COCO greedy rules). FiftyOne's per-box tags,
per-sample counts and AP@0.5 must agree with it exactly.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
import yaml
from review_matching import coco_ap, match_image, read_gt_pixels

from yolo_ft.review.yolo_data import label_path_for


@pytest.fixture(scope="module")
def independent(reviewed, review_model, tiny_yolo_dataset):
    """Per-filepath independent matches, using Ultralytics directly on the same images and settings."""
    from ultralytics import YOLO

    ds = fo.load_dataset(reviewed.dataset)
    names = {int(k): v for k, v in yaml.safe_load(tiny_yolo_dataset.read_text())["names"].items()}
    conf = ds.info["models"][reviewed.pred_field]["conf"]  # what the review recorded it ran with
    assert conf == 0.01
    paths = ds.values("filepath")
    # Same batch composition as the review (one batch of 16): Ultralytics' letterbox depends on it.
    results = YOLO(str(review_model)).predict(paths, conf=conf, iou=0.7, batch=16, verbose=False)
    out = {}
    for path, r in zip(paths, results, strict=True):
        gts = read_gt_pixels(Path(path), label_path_for(Path(path)), names)
        preds = [
            (b, float(c), names[int(k)])
            for b, c, k in zip(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy(), strict=True)
        ]
        out[path] = (match_image(gts, preds, 0.5), preds, gts)
    return out


def test_model_makes_every_kind_of_outcome(reviewed):
    s = reviewed.summary
    assert s.tp > 0 and s.fp > 0 and s.fn > 0, s  # otherwise the checks below prove little


def test_per_sample_counts_match_independent_matching(reviewed, independent):
    ds = fo.load_dataset(reviewed.dataset)
    k = reviewed.eval_key
    for sample in ds:
        m, _, _ = independent[sample.filepath]
        assert (sample[f"{k}_tp"], sample[f"{k}_fp"], sample[f"{k}_fn"]) == m.counts(), sample.filepath


def test_per_box_status_matches_independent_matching(reviewed, independent):
    ds = fo.load_dataset(reviewed.dataset)
    k, pf = reviewed.eval_key, reviewed.pred_field
    for sample in ds:
        m, _, _ = independent[sample.filepath]
        w, h = sample.metadata.width, sample.metadata.height
        got = sorted((round(d.confidence, 5), d[k]) for d in sample[pf].detections)
        want = sorted((round(c, 5), s) for c, s in m.pred_status)
        assert got == want, sample.filepath
        got_gt = sorted(
            ((x * w, y * h, (x + bw) * w, (y + bh) * h), d[k])
            for d in sample.ground_truth.detections
            for x, y, bw, bh in [d.bounding_box]
        )
        want_gt = sorted(m.gt_status)
        assert [s for _, s in got_gt] == [s for _, s in want_gt], sample.filepath
        if got_gt:
            np.testing.assert_allclose([b for b, _ in got_gt], [b for b, _ in want_gt], atol=1e-3)


def test_totals_tp_plus_fn_is_number_of_gt_boxes(reviewed, independent, tiny_yolo_dataset):
    s = reviewed.summary
    label_lines = sum(
        len([ln for ln in p.read_text().splitlines() if ln.strip()])
        for p in (tiny_yolo_dataset.parent / "labels" / "val").glob("*.txt")
    )
    assert s.gt_boxes == label_lines == 9  # 7 stone images + 1 negative in the fixture's val split
    assert s.tp + s.fn == s.gt_boxes
    assert s.tp + s.fp == s.pred_boxes == sum(len(p) for _, p, _ in independent.values())
    tot = np.sum([m.counts() for m, _, _ in independent.values()], axis=0)
    assert (s.tp, s.fp, s.fn) == tuple(int(v) for v in tot)
    assert s.precision == pytest.approx(s.tp / (s.tp + s.fp))
    assert s.recall == pytest.approx(s.tp / s.gt_boxes)


def test_map50_matches_independent_ap(reviewed, independent):
    ap = coco_ap([m for m, _, _ in independent.values()])
    assert reviewed.summary.map50 == pytest.approx(ap, abs=1e-9)
    assert reviewed.summary.per_class_ap50 == {"KIDNEY_STONE": pytest.approx(ap, abs=1e-9)}
    assert 0 <= reviewed.summary.map50_95 <= reviewed.summary.map50


def test_stored_predictions_are_the_models_boxes(reviewed, independent):
    """Relative boxes in FiftyOne, scaled by the stored image size, give back Ultralytics' pixels."""
    ds = fo.load_dataset(reviewed.dataset)
    for sample in ds:
        _, preds, _ = independent[sample.filepath]
        w, h = sample.metadata.width, sample.metadata.height
        got = sorted(
            (d.confidence, x * w, y * h, (x + bw) * w, (y + bh) * h)
            for d in sample[reviewed.pred_field].detections
            for x, y, bw, bh in [d.bounding_box]
        )
        want = sorted((c, *(float(v) for v in b)) for b, c, _ in preds)
        assert len(got) == len(want)
        if got:
            np.testing.assert_allclose(got, want, atol=1e-3)


def test_dataset_holds_the_split_with_yaml_classes(reviewed, tiny_yolo_dataset):
    ds = fo.load_dataset(reviewed.dataset)
    assert ds.persistent
    assert ds.default_classes == ["KIDNEY_STONE"]
    assert ds.info["split"] == "val" and ds.info["data_yaml"] == str(tiny_yolo_dataset.resolve())
    images = sorted(str(p.resolve()) for p in (tiny_yolo_dataset.parent / "images" / "val").iterdir())
    assert sorted(ds.values("filepath")) == images
    assert set(ds.distinct("split")) == {"val"} and ds.count_sample_tags() == {"val": len(images)}
    assert "yolo-ft" in ds.tags
    # GT boxes are FiftyOne-relative [x, y, w, h] of the YOLO (cx, cy, w, h) lines, label names from the yaml
    for sample in ds:
        lines = label_path_for(Path(sample.filepath)).read_text().splitlines()
        want = sorted(
            (round(float(cx) - float(w) / 2, 6), round(float(cy) - float(h) / 2, 6), round(float(w), 6), round(float(h), 6))
            for c, cx, cy, w, h in (ln.split() for ln in lines if ln.strip())
        )
        got = sorted(tuple(round(v, 6) for v in d.bounding_box) for d in sample.ground_truth.detections)
        assert got == want
        assert {d.label for d in sample.ground_truth.detections} <= {"KIDNEY_STONE"}
        assert sample.metadata.width > 0 and sample.metadata.height > 0


def test_views_are_saved_and_ordered_fn_first(reviewed, independent):
    ds = fo.load_dataset(reviewed.dataset)
    assert set(reviewed.views) <= set(ds.list_saved_views())
    mistakes_name, high_name, small_name = reviewed.views
    k = reviewed.eval_key

    mistakes = ds.load_saved_view(mistakes_name)
    expected = {fp for fp, (m, _, _) in independent.items() if m.counts()[1] or m.counts()[2]}
    assert set(mistakes.values("filepath")) == expected
    order = list(zip(mistakes.values(f"{k}_fn"), mistakes.values(f"{k}_fp"), strict=True))
    assert order == sorted(order, key=lambda t: (-t[0], -t[1]))  # misses first, then false alarms
    assert order[0][0] == max(m.counts()[2] for m, _, _ in independent.values())

    high = ds.load_saved_view(high_name)
    labels = [d for dets in high.values(f"{reviewed.pred_field}.detections") for d in dets]
    assert all(d[k] == "fp" and d.confidence >= 0.05 for d in labels)
    assert len(labels) == sum(
        1 for m, _, _ in independent.values() for c, s in m.pred_status if s == "fp" and c >= 0.05
    )
    maxima = [max(d.confidence for d in dets) for dets in high.values(f"{reviewed.pred_field}.detections")]
    assert maxima == sorted(maxima, reverse=True)

    small = ds.load_saved_view(small_name)
    want_small = Counter(
        fp for fp, (m, _, _) in independent.items() for box, s in m.gt_status
        if s == "fn" and (box[2] - box[0]) * (box[3] - box[1]) < 40 * 40
    )
    got_small = Counter(
        fp for fp, dets in zip(small.values("filepath"), small.values("ground_truth.detections"), strict=True)
        for d in dets if d[k] == "fn"
    )
    assert got_small == +want_small
    assert sum(len(d) for d in small.values("ground_truth.detections")) == sum(want_small.values())


def test_report_is_self_contained(reviewed):
    import json
    import re

    import cv2

    page = reviewed.report.read_text(encoding="utf-8")
    folder = reviewed.report.parent
    assert f"{reviewed.summary.map50:.4f}" in page and "mAP@0.5" in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert "pr_curve.png" in srcs and "confusion.png" in srcs
    samples = [s for s in srcs if s.startswith("samples/")]
    mistakes = fo.load_dataset(reviewed.dataset).load_saved_view(reviewed.views[0])
    assert [Path(s).name[3:] for s in samples] == [Path(p).stem[:60] + ".jpg" for p in mistakes.limit(12).values("filepath")]
    for src in srcs:
        assert not src.startswith(("/", "http")), src
        img = cv2.imread(str(folder / src))
        assert img is not None and img.size > 0, src
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (reviewed.summary.tp, reviewed.summary.fp, reviewed.summary.fn)
    cm = np.array(metrics["confusion"]["counts"])  # rows GT, cols prediction, last = (none)
    assert cm[0, 0] == reviewed.summary.tp and cm[0, -1] == reviewed.summary.fn and cm[-1, 0] == reviewed.summary.fp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
