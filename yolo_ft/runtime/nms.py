"""Non-maximum suppression in numpy with the semantics of ``ultralytics.utils.nms.non_max_suppression``
(single label per box, class-aware by a ``max_wh`` offset, ``conf > threshold`` on the best class score,
``max_nms`` pre-cap, ``max_det`` post-cap, greedy suppression of IoU > threshold like torchvision).
"""

from __future__ import annotations

import numpy as np

MAX_WH = 7680  # class offset, as in Ultralytics
MAX_NMS = 30000  # boxes entering NMS, as in Ultralytics


def _iou_rows(boxes: np.ndarray, areas: np.ndarray, i: np.ndarray | int, rest: np.ndarray) -> np.ndarray:
    """IoU of box(es) ``i`` against ``rest``, torchvision's float32 arithmetic (inter / (a + b - inter))."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
    h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):  # two zero-area boxes: 0/0 = NaN, never "over"
        return inter / (areas[i] + areas[rest] - inter)


# Up to this many candidates the IoU of every pair is computed at once (a 512x512 float32 matrix is 1 MiB):
# a dozen numpy calls instead of a dozen per kept box, which is most of NMS's time on a typical image.
MATRIX_MAX = 512


def nms_indices(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS: indices kept, highest score first (a box is dropped when its IoU with a kept one
    exceeds ``iou_thres``)."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    if order.size <= MATRIX_MAX:
        over = _iou_rows(boxes, areas, order[:, None], order[None, :]) > iou_thres  # [a, b]: a suppresses b
        dropped = np.zeros(order.size, dtype=bool)
        keep_pos: list[int] = []
        for a in range(order.size):
            if not dropped[a]:
                keep_pos.append(a)
                dropped |= over[a]
        return order[keep_pos].astype(np.int64, copy=False)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[~(_iou_rows(boxes, areas, i, rest) > iou_thres)]  # NaN IoU does not suppress (torchvision)
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    pred: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.7, max_det: int = 300
) -> np.ndarray:
    """One image's raw head output (4 + nc, anchors) -> (n, 6) rows of x1, y1, x2, y2, conf, class.

    Boxes stay in model-input pixels; the caller rescales them.
    """
    scores_all = pred[4:]
    best = scores_all.max(0)
    cand = np.flatnonzero(best > conf_thres)
    if cand.size == 0:
        return np.zeros((0, 6), dtype=np.float32)
    conf = best[cand]
    cls = scores_all[:, cand].argmax(0)
    xywh = pred[:4, cand]
    if cand.size > MAX_NMS:
        top = np.argsort(-conf, kind="stable")[:MAX_NMS]
        conf, cls, xywh = conf[top], cls[top], xywh[:, top]
    half_w, half_h = xywh[2] / 2, xywh[3] / 2
    out = np.empty((conf.size, 6), dtype=np.float32)
    out[:, 0] = xywh[0] - half_w
    out[:, 1] = xywh[1] - half_h
    out[:, 2] = xywh[0] + half_w
    out[:, 3] = xywh[1] + half_h
    out[:, 4] = conf
    out[:, 5] = cls
    offset = out[:, 5:6] * MAX_WH
    keep = nms_indices(out[:, :4] + offset, conf, iou_thres)[:max_det]
    return out[keep]


def end2end_filter(pred: np.ndarray, conf_thres: float, max_det: int) -> np.ndarray:
    """Models exported with NMS inside (rows of x1, y1, x2, y2, conf, class): threshold and cap only."""
    return pred[pred[:, 4] > conf_thres][:max_det].astype(np.float32, copy=False)
