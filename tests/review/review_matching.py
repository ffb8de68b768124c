"""An independent COCO-style matcher for the review tests, in pixels, straight from the label files.

Written from the COCO rules, not from FiftyOne's code: per image and class, predictions in
descending confidence (ties keep model order) each take the unmatched ground-truth box of highest
IoU if that IoU >= the threshold; unmatched predictions are FP, unmatched ground truth FN.
AP is COCO's 101-point interpolated precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class ImageMatch:
    pred_status: list[tuple[float, str]] = field(default_factory=list)  # (confidence, tp|fp)
    gt_status: list[tuple[tuple[float, float, float, float], str]] = field(default_factory=list)  # (xyxy px, tp|fn)

    def counts(self) -> tuple[int, int, int]:
        tp = sum(s == "tp" for _, s in self.pred_status)
        fp = sum(s == "fp" for _, s in self.pred_status)
        fn = sum(s == "fn" for _, s in self.gt_status)
        return tp, fp, fn


def read_gt_pixels(image: Path, label: Path, names: dict[int, str]) -> list[tuple[np.ndarray, str]]:
    """YOLO label lines → pixel xyxy boxes, using the image size read with PIL."""
    with Image.open(image) as im:
        w, h = im.size
    out = []
    text = label.read_text() if label.is_file() else ""
    for line in text.splitlines():
        if not line.strip():
            continue
        c, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        out.append((np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]), names[int(c)]))
    return out


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_image(gts: list[tuple[np.ndarray, str]], preds: list[tuple[np.ndarray, float, str]],
                iou_thr: float = 0.5) -> ImageMatch:
    m = ImageMatch()
    matched = [False] * len(gts)
    order = sorted(range(len(preds)), key=lambda i: -preds[i][1])  # stable: ties keep model order
    for i in order:
        box, conf, label = preds[i]
        best, best_iou = None, iou_thr
        for j, (g, glabel) in enumerate(gts):
            if matched[j] or glabel != label:
                continue
            v = iou_xyxy(box, g)
            if v >= best_iou:
                best, best_iou = j, v
        if best is None:
            m.pred_status.append((conf, "fp"))
        else:
            matched[best] = True
            m.pred_status.append((conf, "tp"))
    for j, (g, _) in enumerate(gts):
        m.gt_status.append((tuple(float(v) for v in g), "tp" if matched[j] else "fn"))
    return m


def coco_ap(matches: list[ImageMatch]) -> float:
    """101-point interpolated AP of one class over all images."""
    num_gt = sum(len(m.gt_status) for m in matches)
    scored = [(c, s == "tp") for m in matches for c, s in m.pred_status]
    if num_gt == 0:
        return -1.0
    scored.sort(key=lambda t: -t[0])
    tp = np.cumsum([t for _, t in scored], dtype=float)
    prec = tp / np.arange(1, len(scored) + 1)
    rec = tp / num_gt
    for i in range(len(prec) - 1, 0, -1):
        prec[i - 1] = max(prec[i - 1], prec[i])
    q = np.zeros(101)
    for k, r in enumerate(np.linspace(0, 1, 101)):
        idx = np.searchsorted(rec, r, side="left")
        if idx < len(prec):
            q[k] = prec[idx]
    return float(q.mean())
