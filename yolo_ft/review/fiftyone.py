"""The FiftyOne side of a review: load a YOLO split as ground truth, store a model's predictions, evaluate.

One persistent FiftyOne dataset per (YOLO dataset, split), keyed by image filepath, so a re-run
updates ground truth and predictions in place instead of duplicating samples. Each model writes its
own prediction field (``pred_<stem>_<hash>``) and evaluation key (``eval_<stem>_<hash>``), so two
models sit side by side on the same samples and the App can compare them.
Everything is written in batches: memory stays flat however large the split.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import fiftyone as fo
import numpy as np
from PIL import Image

from yolo_ft.records import YoloFtError
from yolo_ft.review.predict import ImagePredictions, Predictor, batched
from yolo_ft.review.yolo_data import LabelledImage, YoloDataset, iter_labelled_images, resolve_split

log = logging.getLogger(__name__)

GT_FIELD = "ground_truth"
DATASET_TAG = "yolo-ft"
INGEST_BATCH = 256
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ModelFields:
    """Where one model's results live on the dataset."""

    tag: str  # <stem>_<hash8>

    @property
    def pred_field(self) -> str:
        return f"pred_{self.tag}"

    @property
    def eval_key(self) -> str:
        return f"eval_{self.tag}"


def default_dataset_name(data: YoloDataset, split: str, *, qualified: bool = False) -> str:
    """``yolo-ft-<dataset folder>-<split>``: predictable, so ``--list``/``--delete`` and re-runs find it.

    ``qualified`` adds 6 hex of the data.yaml path, used when the short name already belongs to another
    dataset folder of the same name (two runs' ``dataset/`` folders, say).
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", data.root.name).strip("-") or "dataset"
    if qualified:
        slug += "-" + hashlib.sha256(str(data.yaml_path).encode()).hexdigest()[:6]
    return f"yolo-ft-{slug}-{resolve_split(data, split)}"


def list_review_datasets() -> list[str]:
    """Datasets this tool created (tagged ``yolo-ft``), by name."""
    return sorted(fo.list_datasets(tags=DATASET_TAG))


def delete_review_dataset(name: str) -> None:
    """Delete one review dataset; refuse names that do not exist or were not made by yolo-ft."""
    if not fo.dataset_exists(name):
        raise YoloFtError(f"no FiftyOne dataset named '{name}' (see: yolo-ft review --list)")
    if name not in list_review_datasets():
        raise YoloFtError(f"FiftyOne dataset '{name}' was not created by yolo-ft review; not deleting it")
    fo.delete_dataset(name)


def open_dataset(data: YoloDataset, split: str, name: str | None = None) -> fo.Dataset:
    """Load or create the persistent dataset for this split; refuse one built from another data.yaml."""
    split = resolve_split(data, split)
    if name is None:
        name = default_dataset_name(data, split)
        if fo.dataset_exists(name) and not _built_from(fo.load_dataset(name), data, split):
            name = default_dataset_name(data, split, qualified=True)
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if not _built_from(ds, data, split):
            raise YoloFtError(
                f"FiftyOne dataset '{name}' holds split '{ds.info.get('split')}' of {ds.info.get('data_yaml')}, "
                f"not '{split}' of {data.yaml_path}; pass --name to use another dataset"
            )
    else:
        ds = fo.Dataset(name, persistent=True)
    ds.persistent = True
    ds.default_classes = data.classes
    ds.info.update({"data_yaml": str(data.yaml_path), "split": split, "names": {str(k): v for k, v in data.names.items()}})
    if DATASET_TAG not in ds.tags:
        ds.tags = list(ds.tags) + [DATASET_TAG]
    ds.save()
    if not ds.has_sample_field(GT_FIELD):
        ds.add_sample_field(GT_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    if not ds.has_sample_field("split"):
        ds.add_sample_field("split", fo.StringField)
    return ds


def _built_from(ds: fo.Dataset, data: YoloDataset, split: str) -> bool:
    """True if ``ds`` is empty of provenance (new) or was built from this data.yaml and split."""
    built_from = ds.info.get("data_yaml")
    return not built_from or (built_from == str(data.yaml_path) and ds.info.get("split") == split)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as decoders that honour EXIF orientation see it, from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except OSError as e:
        raise YoloFtError(f"{path}: cannot read image ({e})") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def gt_detections(item: LabelledImage, names: dict[int, str]) -> fo.Detections:
    """YOLO (cx, cy, w, h) normalised → FiftyOne relative [x, y, w, h] top-left boxes."""
    return fo.Detections(detections=[
        fo.Detection(label=names[c], bounding_box=[cx - w / 2, cy - h / 2, w, h])
        for c, cx, cy, w, h in item.boxes
    ])


def ingest_split(ds: fo.Dataset, data: YoloDataset, split: str, *, progress: bool = True) -> dict[str, int]:
    """Upsert every image of ``split`` (keyed by filepath) and drop samples whose image left the split.

    Returns counts: ``added``, ``updated``, ``removed``, ``samples``, ``gt_boxes``.
    """
    split = resolve_split(data, split)
    existing = dict(zip(ds.values("filepath"), ds.values("id"), strict=True))
    seen: set[str] = set()
    added = updated = gt_boxes = 0
    bar = _progress(desc=f"ingest {split}", enabled=progress)
    for batch in batched(iter_labelled_images(data, split), INGEST_BATCH):
        new, gt_updates, meta_updates = [], {}, {}
        for item in batch:
            fp = str(item.image)
            if fp in seen:
                continue
            seen.add(fp)
            w, h = image_size(item.image)
            meta = fo.ImageMetadata(width=w, height=h, size_bytes=item.image.stat().st_size)
            dets = gt_detections(item, data.names)
            gt_boxes += len(item.boxes)
            if fp in existing:
                gt_updates[existing[fp]] = dets
                meta_updates[existing[fp]] = meta
            else:
                new.append(fo.Sample(filepath=fp, tags=[split], split=split, metadata=meta, **{GT_FIELD: dets}))
        if new:
            ds.add_samples(new, progress=False)
            added += len(new)
        if gt_updates:
            ds.set_values(GT_FIELD, gt_updates, key_field="id")
            ds.set_values("metadata", meta_updates, key_field="id")
            updated += len(gt_updates)
        bar.update(len(batch))
    bar.close()
    stale = [sid for fp, sid in existing.items() if fp not in seen]
    if stale:
        ds.delete_samples(stale)
    if not seen:
        raise YoloFtError(f"{data.yaml_path}: split '{split}' has no images")
    return {"added": added, "updated": updated, "removed": len(stale), "samples": len(ds), "gt_boxes": gt_boxes}


def pred_detections(p: ImagePredictions) -> fo.Detections:
    """Pixel xyxy → relative [x, y, w, h], using the size of the image the model actually decoded."""
    dets = []
    for (x1, y1, x2, y2), conf, name in zip(p.xyxy, p.confidence, p.class_name, strict=True):
        dets.append(fo.Detection(
            label=name,
            bounding_box=[x1 / p.width, y1 / p.height, (x2 - x1) / p.width, (y2 - y1) / p.height],
            confidence=float(conf),
        ))
    return fo.Detections(detections=dets)


def store_predictions(ds: fo.Dataset, predictor: Predictor, fields: ModelFields, *, batch_size: int = 16,
                      progress: bool = True) -> int:
    """Run ``predictor`` over every sample and (over)write ``fields.pred_field``. Returns the box count."""
    if ds.has_evaluation(fields.eval_key):
        ds.delete_evaluation(fields.eval_key)  # its per-label tags would describe the old predictions
    if not ds.has_sample_field(fields.pred_field):
        ds.add_sample_field(fields.pred_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    ids, paths = ds.values("id"), ds.values("filepath")
    n_boxes = 0
    bar = _progress(desc="predict", total=len(ids), enabled=progress)
    for chunk in batched(iter(range(len(ids))), batch_size):
        preds = predictor.predict([Path(paths[i]) for i in chunk])
        values = {}
        for i, p in zip(chunk, preds, strict=True):
            values[ids[i]] = pred_detections(p)
            n_boxes += len(p.confidence)
        ds.set_values(fields.pred_field, values, key_field="id")
        bar.update(len(chunk))
    bar.close()
    return n_boxes


@dataclass
class EvalSummary:
    """The numbers a person asks first: how many hits, false alarms and misses, and the mAP."""

    tp: int
    fp: int
    fn: int
    gt_boxes: int
    pred_boxes: int
    precision: float
    recall: float
    map50: float  # COCO 101-point AP at IoU 0.5, mean over classes with ground truth
    map50_95: float  # COCO mAP over IoU 0.50:0.95
    iou: float
    per_class_ap50: dict[str, float]


def evaluate(ds: fo.Dataset, fields: ModelFields, *, iou: float = 0.5, progress: bool = True):
    """COCO-style evaluation at ``iou``: tags every box tp/fp/fn, counts per sample, computes mAP.

    Returns ``(results, summary)`` where ``results`` is FiftyOne's ``COCODetectionResults``.
    """
    if ds.has_evaluation(fields.eval_key):
        ds.delete_evaluation(fields.eval_key)
    results = ds.evaluate_detections(
        fields.pred_field, gt_field=GT_FIELD, eval_key=fields.eval_key, method="coco", iou=iou,
        compute_mAP=True, classes=ds.default_classes, progress=progress,
    )
    k = fields.eval_key
    tp, fp, fn = (int(sum(ds.values(f"{k}_{s}"))) for s in ("tp", "fp", "fn"))
    per_class = {}
    t0 = int(np.argmin(np.abs(results.iou_threshs - 0.5)))
    for ci, c in enumerate(results.classes):
        row = results.precision[t0, ci]
        if row[0] > -1:
            per_class[str(c)] = float(np.mean(row))
    m50_95 = float(results.mAP())
    summary = EvalSummary(
        tp=tp, fp=fp, fn=fn,
        gt_boxes=int(ds.count(f"{GT_FIELD}.detections")),
        pred_boxes=int(ds.count(f"{fields.pred_field}.detections")),
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        map50=float(np.mean(list(per_class.values()))) if per_class else 0.0,
        map50_95=max(m50_95, 0.0),
        iou=iou,
        per_class_ap50=per_class,
    )
    return results, summary


def load_results(ds: fo.Dataset, fields: ModelFields):
    """The stored evaluation results of a model (for a report built after the fact)."""
    return ds.load_evaluation_results(fields.eval_key)


def _progress(desc: str, enabled: bool, total: int | None = None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, leave=False)
