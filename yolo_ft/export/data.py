"""Read the images (and YOLO labels) of one split of a ``data.yaml`` — what calibration, the int8 gate
and the parity check feed the models. Real images only; no Ultralytics dataset machinery (it caches
and may try to download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from yolo_ft.records import YoloFtError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class LabelledImage:
    image: Path
    boxes: np.ndarray  # (n, 4) xyxy pixels, float32
    classes: np.ndarray  # (n,) int64


def _split_entries(data_yaml: Path, split: str) -> list[Path]:
    try:
        cfg = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise YoloFtError(f"{data_yaml}: cannot read data.yaml ({e})") from e
    if not isinstance(cfg, dict):
        raise YoloFtError(f"{data_yaml}: not a mapping")
    base = Path(cfg.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = (data_yaml.parent / base).resolve()
    keys = [split] + (["validation", "valid", "test"] if split == "val" else [])
    for key in keys:
        entry = cfg.get(key)
        if entry:
            entries = entry if isinstance(entry, list) else [entry]
            return [p if p.is_absolute() else base / p for p in (Path(str(e)) for e in entries)]
    raise YoloFtError(f"{data_yaml}: no '{split}' split")


def split_images(data_yaml: str | Path, split: str = "val") -> list[Path]:
    """Image files of ``split`` (directory entries, or .txt lists), sorted for determinism."""
    data_yaml = Path(data_yaml)
    out: list[Path] = []
    for entry in _split_entries(data_yaml, split):
        if entry.is_dir():
            out += sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif entry.suffix == ".txt" and entry.is_file():
            for line in entry.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    p = Path(line.strip())
                    out.append(p if p.is_absolute() else entry.parent / p)
        else:
            raise YoloFtError(f"{data_yaml}: split '{split}' path {entry} does not exist")
    if not out:
        raise YoloFtError(f"{data_yaml}: split '{split}' has no images")
    return out


def label_path(image: Path) -> Path:
    """YOLO convention: .../images/x.jpg -> .../labels/x.txt (last 'images' component)."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def load_labelled(images: list[Path]) -> list[LabelledImage]:
    """Images with their ground-truth boxes in pixels (missing label file = no objects)."""
    import cv2

    out = []
    for img in images:
        im = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
        if im is None:
            raise YoloFtError(f"{img}: not a readable image")
        h, w = im.shape[:2]
        rows = []
        lp = label_path(img)
        if lp.is_file():
            for n, line in enumerate(lp.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                tok = line.split()
                if len(tok) < 5:
                    raise YoloFtError(f"{lp}:{n}: expected 'class cx cy w h'")
                c, cx, cy, bw, bh = int(tok[0]), *map(float, tok[1:5])
                rows.append((c, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        out.append(LabelledImage(img, arr[:, 1:].astype(np.float32), arr[:, 0].astype(np.int64)))
    return out
