"""The int8 gate's mAP50 equals Ultralytics' own (ap_per_class with its greedy matching) on real labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolo_ft.export.data import load_labelled, split_images
from yolo_ft.export.metrics import map50


def _ultralytics_map50(preds, truths) -> float:
    from types import SimpleNamespace

    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    v = SimpleNamespace(iouv=torch.tensor([0.5]))
    tps, confs, pcls, tcls = [], [], [], []
    for (pb, pc, pk), (gb, gk) in zip(preds, truths):
        order = np.argsort(-pc, kind="stable")
        pb, pc, pk = pb[order], pc[order], pk[order]
        tcls.append(gk)
        if len(pc) == 0:
            continue
        iou = box_iou(torch.from_numpy(gb).float(), torch.from_numpy(pb).float()) if len(gb) else torch.zeros(0, len(pc))
        tps.append(BaseValidator.match_predictions(v, torch.from_numpy(pk), torch.from_numpy(gk), iou).numpy())
        confs.append(pc)
        pcls.append(pk)
    ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))[5]
    return float(ap[:, 0].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map50_matches_ultralytics_on_real_labels(tiny_yolo_dataset, seed):
    rng = np.random.default_rng(seed)
    gts = load_labelled(split_images(tiny_yolo_dataset, "val"))
    assert len(gts) == 8 and sum(len(g.boxes) for g in gts) == 9  # tiny set: 1 negative + 7 stone images
    truths = [(g.boxes, g.classes) for g in gts]
    preds = []
    for g in gts:
        keep = rng.random(len(g.boxes)) > 0.3  # miss some objects
        jitter = rng.normal(0, 6, (int(keep.sum()), 4)).astype(np.float32)  # some fall below IoU 0.5
        fp = rng.uniform(0, 400, (3, 2)).astype(np.float32)
        fp_boxes = np.concatenate([fp, fp + rng.uniform(10, 60, (3, 2))], 1).astype(np.float32)
        boxes = np.concatenate([g.boxes[keep] + jitter, fp_boxes])
        conf = rng.uniform(0.05, 1, len(boxes)).astype(np.float32)
        preds.append((boxes, conf, np.zeros(len(boxes), np.int64)))
    ours = map50(preds, truths)
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(_ultralytics_map50(preds, truths), abs=1e-6)


def test_map50_extremes(tiny_yolo_dataset):
    gts = load_labelled(split_images(tiny_yolo_dataset, "val"))
    truths = [(g.boxes, g.classes) for g in gts]
    perfect = [(g.boxes, np.ones(len(g.boxes), np.float32), g.classes) for g in gts]
    # Ultralytics' 101-point interpolation tops out at 0.995 (the last point drops to 0); ours is identical.
    assert map50(perfect, truths) == pytest.approx(0.995, abs=1e-9) == _ultralytics_map50(perfect, truths)
    nothing = [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in gts]
    assert map50(nothing, truths) == 0.0
