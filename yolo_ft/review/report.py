"""A self-contained HTML error report for people without the FiftyOne App.

One folder that opens from disk without a server: ``index.html`` with the metrics, ``pr_curve.png``
and ``confusion.png`` (matplotlib, Agg), ``metrics.json``, and the worst samples in ``samples/`` drawn
with cv2 (ground truth green, predictions red with their confidences). The folder is built beside the
target and moved into place at the end, so a crash never leaves half a report.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from yolo_ft.records import YoloFtError
from yolo_ft.review.fiftyone import GT_FIELD, EvalSummary, ModelFields
from yolo_ft.utils.atomic import atomic_output_dir

GREEN = (40, 200, 40)  # BGR
RED = (40, 40, 230)
REPORT_FILE = "index.html"


def _safe_target(out_dir: Path) -> None:
    """Only replace a folder that is empty or an earlier report: never wipe a user's unrelated folder."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / REPORT_FILE).is_file():
        raise YoloFtError(f"{out_dir}: exists, is not empty and holds no {REPORT_FILE}; choose another report folder")


def draw_sample(sample, pred_field: str, eval_key: str) -> np.ndarray:
    """The image with GT boxes (green; thick if missed) and predictions (red; 'FP'/'TP' + confidence)."""
    img = cv2.imread(sample.filepath, cv2.IMREAD_COLOR)
    if img is None:
        raise YoloFtError(f"{sample.filepath}: cannot read image for the report")
    h, w = img.shape[:2]
    scale = max(1.0, 640 / max(h, w))  # small images are enlarged so tiny boxes stay visible
    if scale > 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
        h, w = img.shape[:2]

    def rect(det) -> tuple[tuple[int, int], tuple[int, int]]:
        x, y, bw, bh = det.bounding_box
        return (round(x * w), round(y * h)), (round((x + bw) * w), round((y + bh) * h))

    gts = sample[GT_FIELD].detections if sample[GT_FIELD] else []
    for d in gts:
        p1, p2 = rect(d)
        cv2.rectangle(img, p1, p2, GREEN, 3 if d[eval_key] == "fn" else 1)
    preds = sample[pred_field].detections if sample[pred_field] else []
    for d in preds:
        p1, p2 = rect(d)
        cv2.rectangle(img, p1, p2, RED, 1)
        text = f"{(d[eval_key] or '').upper()} {d.confidence:.2f}"
        cv2.putText(img, text, (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, RED, 1, cv2.LINE_AA)
    return img


def plot_pr_curve(results, path: Path, iou: float = 0.5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = int(np.argmin(np.abs(results.iou_threshs - iou)))
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for ci, c in enumerate(results.classes):
        prec = results.precision[t, ci]
        if prec[0] > -1:
            ax.plot(results.recall, prec, label=f"{c} (AP {np.mean(prec):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Precision-recall at IoU {results.iou_threshs[t]:.2f}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(results, classes: list[str], path: Path) -> np.ndarray:
    """Rows ground truth, columns prediction; the last row/column '(none)' holds FP and FN counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(results.confusion_matrix(classes=classes, include_missing=True), dtype=int)
    labels = list(classes) + ["(none)"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * n + 2), max(3, 0.6 * n + 1.5)), dpi=100)
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="prediction", ylabel="ground truth", title="Confusion counts")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return cm


def write_report(ds, view, fields: ModelFields, results, summary: EvalSummary, out_dir: str | Path, *,
                 worst_n: int = 12, title: str | None = None, extra: dict | None = None) -> Path:
    """Write the report folder for one evaluated model; ``view`` orders the worst samples."""
    out_dir = Path(out_dir).absolute()
    _safe_target(out_dir)
    classes = list(ds.default_classes)
    with atomic_output_dir(out_dir, overwrite=True) as tmp:
        plot_pr_curve(results, tmp / "pr_curve.png", iou=0.5)
        cm = plot_confusion(results, classes, tmp / "confusion.png")
        (tmp / "samples").mkdir()
        tiles = []
        for rank, sample in enumerate(view.limit(worst_n), start=1):
            img = draw_sample(sample, fields.pred_field, fields.eval_key)
            rel = f"samples/{rank:02d}_{Path(sample.filepath).stem[:60]}.jpg"
            if not cv2.imwrite(str(tmp / rel), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise YoloFtError(f"cannot write {tmp / rel}")
            tiles.append((rel, sample, rank))
        metrics = {"dataset": ds.name, "pred_field": fields.pred_field, "eval_key": fields.eval_key,
                   **asdict(summary), "confusion": {"labels": classes + ["(none)"], "counts": cm.tolist()},
                   "worst_samples": [s.filepath for _, s, _ in tiles], **(extra or {})}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        page = _render_html(title or f"yolo-ft review: {ds.name}", ds.name, fields, summary, tiles, extra or {})
        (tmp / REPORT_FILE).write_text(page, encoding="utf-8")
    return out_dir / REPORT_FILE


def _render_html(title: str, ds_name: str, fields: ModelFields, s: EvalSummary, tiles, extra: dict) -> str:
    e = html.escape
    rows = [
        ("mAP@0.5", f"{s.map50:.4f}"), ("mAP@0.5:0.95", f"{s.map50_95:.4f}"),
        (f"precision (IoU {s.iou:g})", f"{s.precision:.4f}"), (f"recall (IoU {s.iou:g})", f"{s.recall:.4f}"),
        ("true positives", s.tp), ("false positives", s.fp), ("false negatives (missed)", s.fn),
        ("ground-truth boxes", s.gt_boxes), ("predicted boxes", s.pred_boxes),
    ] + [(f"AP@0.5 {c}", f"{ap:.4f}") for c, ap in s.per_class_ap50.items()] + [(k, v) for k, v in extra.items()]
    table = "\n".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    cards = []
    k = fields.eval_key
    for rel, sample, rank in tiles:
        counts = f"FN {sample[k + '_fn']} · FP {sample[k + '_fp']} · TP {sample[k + '_tp']}"
        cards.append(
            f'<figure><a href="{e(rel)}"><img src="{e(rel)}" alt="{e(Path(sample.filepath).name)}"></a>'
            f"<figcaption>#{rank} {e(Path(sample.filepath).name)}<br>{counts}</figcaption></figure>"
        )
    worst = "\n".join(cards) or "<p>No sample has a mistake.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 3px 12px; border-bottom: 1px solid #ddd; text-align: left; }}
.plots img {{ max-width: 48%; margin-right: 1%; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 320px; }} figure img {{ width: 320px; }} figcaption {{ font-size: 12px; }}
.legend span {{ padding: 0 6px; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>Dataset <code>{e(ds_name)}</code>, predictions <code>{e(fields.pred_field)}</code>,
evaluation <code>{e(k)}</code> (COCO-style matching, IoU {s.iou:g}).</p>
<h2>Metrics</h2>
<table>{table}</table>
<h2>Curves</h2>
<div class="plots"><img src="pr_curve.png" alt="precision-recall curve"><img src="confusion.png" alt="confusion counts"></div>
<h2>Worst samples (most missed objects first)</h2>
<p class="legend"><span style="color:#28c828">■ ground truth (thick = missed)</span>
<span style="color:#e62828">■ prediction: TP/FP and confidence</span></p>
<div class="grid">
{worst}
</div>
</body></html>
"""
