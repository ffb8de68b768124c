"""mAP50 in numpy: the number the int8 gate compares. Same recipe as Ultralytics' ``ap_per_class``
(greedy IoU >= 0.5 matching per class, precision envelope, 101-point interpolated AP)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def _ap(recall: np.ndarray, precision: np.ndarray) -> float:
    # Precision falls to 0 right after the last recall reached (not linearly out to recall 1).
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def map50(
    predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_thres: float = 0.5,
) -> float:
    """Mean AP at IoU 0.5 over classes present in the ground truth.

    predictions: per image (xyxy, confidence, class_id); truths: per image (xyxy, class_id).
    """
    confs, tps, pcls = [], [], []
    gt_counts: dict[int, int] = {}
    for (pb, pc, pk), (gb, gk) in zip(predictions, truths):
        for k in gk.tolist():
            gt_counts[k] = gt_counts.get(k, 0) + 1
        tp = np.zeros(len(pc), dtype=bool)
        if len(pc) and len(gb):
            iou = box_iou(pb, gb)
            taken = np.zeros(len(gb), dtype=bool)
            for i in np.argsort(-pc, kind="stable"):
                cand = (iou[i] >= iou_thres) & (gk == pk[i]) & ~taken
                if cand.any():
                    j = int(np.argmax(np.where(cand, iou[i], -1)))
                    taken[j] = True
                    tp[i] = True
        confs.append(pc)
        tps.append(tp)
        pcls.append(pk)
    if not gt_counts:
        return 0.0
    conf = np.concatenate(confs) if confs else np.zeros(0)
    tp = np.concatenate(tps) if tps else np.zeros(0, bool)
    cls = np.concatenate(pcls) if pcls else np.zeros(0, int)
    aps = []
    for k, n_gt in gt_counts.items():
        sel = cls == k
        order = np.argsort(-conf[sel], kind="stable")
        t = tp[sel][order].astype(np.float64)
        ctp = np.cumsum(t)
        cfp = np.cumsum(1 - t)
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, 1e-9)
        aps.append(_ap(recall, precision) if len(t) else 0.0)
    return float(np.mean(aps))
