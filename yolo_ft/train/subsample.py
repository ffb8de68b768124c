"""Deterministic, seeded subsets of a dataset's TRAIN split (validation untouched) for data-fraction A/Bs.

Ultralytics' own ``fraction`` keeps the first N files in sorted order, which ignores the seed and, on a
dataset whose file names sort by class (``Normal*`` before ``STONE*``), can keep only negatives. Here
images with and without boxes are sampled separately (stratified) with ``random.Random(seed)``, and the
subset is written as an image list that a derived data.yaml points to; labels are found by Ultralytics'
usual ``images/`` -> ``labels/`` rule, so nothing is copied.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from yolo_ft.records import YoloFtError
from yolo_ft.utils.atomic import atomic_write_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic"}


def _label_for(img: Path) -> Path:
    parts = list(img.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _resolve(root: Path, entry: str | list) -> list[Path]:
    """Image files of a data.yaml split entry (dir, list file, or a list of either)."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        p = Path(e)
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out += [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES]
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else (p.parent / q if line.startswith("./") else root / q))
        else:
            raise YoloFtError(f"{p}: train split not found (a folder or an image-list .txt is expected)")
    return sorted(set(x.resolve() for x in out))


def _abs_entry(root: Path, entry: str | list) -> str | list:
    if isinstance(entry, list):
        return [_abs_entry(root, e) for e in entry]
    p = Path(entry)
    return str(p if p.is_absolute() else (root / p).resolve())


def load_data_yaml(data: Path) -> tuple[dict, Path]:
    try:
        d = yaml.safe_load(Path(data).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise YoloFtError(f"{data}: cannot read data.yaml ({e})") from e
    if not isinstance(d, dict) or "train" not in d or "val" not in d:
        raise YoloFtError(f"{data}: data.yaml needs 'train' and 'val' entries")
    root = Path(d.get("path") or Path(data).parent)
    if not root.is_absolute():
        root = (Path(data).parent / root).resolve()
    return d, root


def subsample_train(data: Path, fraction: float, seed: int, out_dir: Path) -> Path:
    """Write ``out_dir/data.yaml`` whose train split is a seeded, stratified ``fraction`` of the original."""
    if not 0 < fraction <= 1:
        raise YoloFtError(f"fraction must be in (0, 1], got {fraction}")
    d, root = load_data_yaml(data)
    images = _resolve(root, d["train"])
    if not images:
        raise YoloFtError(f"{data}: train split has no images")
    pos = [p for p in images if _label_for(p).is_file() and _label_for(p).read_text().strip()]
    neg = [p for p in images if p not in set(pos)]
    rng = random.Random(seed)
    keep: list[Path] = []
    for part, minimum in ((pos, 1), (neg, 0)):
        n = min(len(part), max(minimum, round(fraction * len(part))))
        keep += rng.sample(part, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "train.txt"
    atomic_write_text(listing, "".join(f"{p}\n" for p in sorted(keep)))
    new = {k: v for k, v in d.items() if k not in {"path", "train", "val", "test"}}
    new.update({"path": str(root), "train": str(listing.resolve()), "val": _abs_entry(root, d["val"])})
    if d.get("test"):
        new["test"] = _abs_entry(root, d["test"])
    new["yolo_ft_subset"] = {"source": str(Path(data).resolve()), "fraction": fraction, "seed": seed,
                             "images": len(keep), "of": len(images)}
    out = out_dir / "data.yaml"
    atomic_write_text(out, yaml.safe_dump(new, sort_keys=False))
    return out
