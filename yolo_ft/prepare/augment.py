"""``--augment N``: N bbox-safe variants per training image, for very small datasets.

Mild, medical-safe transforms only — a few degrees of rotation, ±10 % scale, small shifts,
flips, CLAHE, slight blur or noise — and no colour jitter (CT grey levels carry meaning).
Variants go to the train split only, so val/test stay real, unaltered images. Each variant is
seeded from (seed, source name, variant index), so the output is the same on every run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from yolo_ft.records import Box, Record

MIN_VISIBILITY = 0.5  # a box cut to less than half its area by the affine is dropped


def build_transform():
    """The preset: one albumentations Compose with pascal_voc (pixel xyxy) boxes."""
    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.8),
            A.CLAHE(clip_limit=2.0, p=0.3),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 3), p=1.0),
                     A.GaussNoise(std_range=(0.01, 0.03), p=1.0)], p=0.3),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=MIN_VISIBILITY,
                                 clip=True, filter_invalid_bboxes=True),
    )


def variant_seed(seed: int, name: str, k: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{k}".encode()).digest()[:4], "little")


def augment_image(image_path: Path, record: Record, n: int, seed: int, transform=None):
    """Yield (k, encoded bytes, suffix, boxes) for ``n`` variants of one written train image."""
    import cv2
    import numpy as np

    transform = transform or build_transform()
    img = cv2.imread(str(image_path), cv2.IMREAD_COLOR)  # applies EXIF like Ultralytics; boxes are in that frame
    if img is None:
        return
    h, w = img.shape[:2]
    bboxes = [(max(0.0, b.x1), max(0.0, b.y1), min(float(w), b.x2), min(float(h), b.y2)) for b in record.boxes]
    labels = [b.label for b in record.boxes]
    suffix = image_path.suffix.lower() if image_path.suffix.lower() in {".jpg", ".jpeg", ".png"} else ".png"
    for k in range(1, n + 1):
        transform.set_random_seed(variant_seed(seed, image_path.name, k))
        out = transform(image=img, bboxes=np.array(bboxes, dtype=np.float32).reshape(-1, 4), labels=labels)
        params = [int(cv2.IMWRITE_JPEG_QUALITY), 95] if suffix in {".jpg", ".jpeg"} else []
        ok, enc = cv2.imencode(suffix, out["image"], params)
        if not ok:
            continue
        boxes = [Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), str(lbl))
                 for b, lbl in zip(out["bboxes"], out["labels"])]
        yield k, enc.tobytes(), suffix, boxes
