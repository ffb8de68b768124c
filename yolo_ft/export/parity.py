"""The export check: the same real images through the same pre-processing into PyTorch and into ONNX;
boxes matched one-to-one (same class, IoU >= a threshold) and confidences compared.

A box present on one side only is tolerated only when it is *borderline*: its confidence is within the
tolerance of the cut that removed its twin (the conf threshold, or the lowest kept score when max_det
truncated the list). Anything else is a real disagreement and fails the check.

fp16 is judged from a confidence floor (``Tolerance.min_conf``): below ~0.1 a YOLO box comes from a flat
DFL distribution, so fp16 rounding inside the network moves it far (measured: COCO YOLO11n on 55 kidney,
blood-cell and COCO images at conf 0.001: 11 of 3,700 boxes unmatched at IoU 0.95, all with confidence
0.02-0.06, several of them NMS flips at IoU ~0.70), while every box at or above 0.1 matched, the worst at
IoU 0.983 and 0.0095 confidence: half the stated tolerance. Boxes below the floor are still matched and
counted, but do not fail the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolo_ft.export.metrics import box_iou

PerImage = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy (n,4), confidence (n,), class_id (n,)


@dataclass(frozen=True)
class Tolerance:
    iou: float  # a matched pair overlaps at least this much
    conf: float  # and its confidences differ by at most this
    min_conf: float = 0.0  # boxes below this confidence (on both sides) are reported, not judged


# Stated tolerances per precision. fp32 is the bar, on every box down to the check's threshold.
# fp16 keeps 10-bit mantissas through the whole network: scores move by up to ~1e-2 and confident boxes
# by a fraction of a pixel, so it is judged on the boxes a deployment could keep (confidence >= 0.1).
TOLERANCES = {"fp32": Tolerance(iou=0.99, conf=1e-3), "fp16": Tolerance(iou=0.95, conf=2e-2, min_conf=0.1)}


def _similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU, except that zero-area boxes (flattened by clipping at the image edge) with the same corners
    (within 0.01 px) count as identical: their IoU is 0/0."""
    iou = box_iou(a, b)
    if iou.size:
        flat = ((a[:, 2:] - a[:, :2]).prod(1) <= 0)[:, None] | ((b[:, 2:] - b[:, :2]).prod(1) <= 0)[None, :]
        same = np.abs(a[:, None, :] - b[None, :, :]).max(2) <= 0.01
        iou[flat & same] = 1.0
    return iou


def _floor(confs: np.ndarray, conf_thres: float, max_det: int) -> float:
    return float(max(conf_thres, confs.min())) if len(confs) >= max_det else conf_thres


def compare(
    reference: Sequence[PerImage],
    candidate: Sequence[PerImage],
    tol: Tolerance,
    conf_thres: float,
    max_det: int = 300,
) -> dict:
    """Match boxes image by image; return counts and worst-case figures, with ``passed``."""
    matched = unmatched_ref = unmatched_cand = borderline = 0
    n_ref = n_cand = 0
    cut = max(conf_thres, tol.min_conf)
    min_iou, max_dconf, dconfs = 1.0, 0.0, []
    for (rb, rc, rk), (cb, cc, ck) in zip(reference, candidate, strict=True):
        n_ref += len(rc)
        n_cand += len(cc)
        iou = _similarity(rb, cb)
        if iou.size:
            iou[rk[:, None] != ck[None, :]] = 0.0
        used = np.zeros(len(cc), dtype=bool)
        r_floor = _floor(rc, cut, max_det) if len(rc) else cut
        c_floor = _floor(cc, cut, max_det) if len(cc) else cut
        for i in np.argsort(-rc, kind="stable"):
            j = -1
            if iou.shape[1]:
                row = np.where(used, -1.0, iou[i])
                j = int(np.argmax(row))
                if row[j] < tol.iou:
                    j = -1
            if j >= 0:
                used[j] = True
                matched += 1
                if max(rc[i], cc[j]) < tol.min_conf:
                    continue  # matched, but below the judged confidence
                d = abs(float(rc[i]) - float(cc[j]))
                dconfs.append(d)
                max_dconf = max(max_dconf, d)
                min_iou = min(min_iou, float(iou[i, j]))
            elif rc[i] < c_floor + tol.conf:
                borderline += 1
            else:
                unmatched_ref += 1
        for j in np.flatnonzero(~used):
            if cc[j] < r_floor + tol.conf:
                borderline += 1
            else:
                unmatched_cand += 1
    passed = unmatched_ref == 0 and unmatched_cand == 0 and max_dconf <= tol.conf
    return {
        "boxes_reference": n_ref,
        "boxes_onnx": n_cand,
        "matched": matched,
        "matched_judged": len(dconfs),  # pairs at or above the judged confidence: the figures below
        "unmatched_reference": unmatched_ref,
        "unmatched_onnx": unmatched_cand,
        "borderline_unmatched": borderline,
        "min_matched_iou": round(min_iou, 6) if dconfs else None,
        "max_conf_delta": float(f"{max_dconf:.3g}"),
        "mean_conf_delta": float(f"{np.mean(dconfs):.3g}") if dconfs else 0.0,
        "tolerance": {"iou": tol.iou, "conf": tol.conf, "judged_from_conf": tol.min_conf},
        "passed": bool(passed),
    }


def agreement(reference: Sequence[PerImage], candidate: Sequence[PerImage], iou_thres: float = 0.5) -> float:
    """Fraction of reference boxes that have a same-class candidate box with IoU >= iou_thres (int8 figure)."""
    total = hit = 0
    for (rb, _, rk), (cb, _, ck) in zip(reference, candidate, strict=True):
        total += len(rb)
        if len(rb) and len(cb):
            iou = box_iou(rb, cb)
            iou[rk[:, None] != ck[None, :]] = 0.0
            hit += int((iou.max(1) >= iou_thres).sum())
    return hit / total if total else 1.0
