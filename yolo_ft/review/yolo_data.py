"""Read a YOLO detection dataset (``data.yaml`` + ``images/<split>`` + ``labels/<split>``) one image at a time.

Review must accept exactly what ``prepare`` writes and what Ultralytics trains on, so the rules are
Ultralytics' own: ``path`` is the root (relative paths are relative to the yaml's folder), a split is a
folder of images, a list of folders, or a ``.txt`` list of image paths, and each image's label file is
found by swapping the last ``/images/`` for ``/labels/`` and the suffix for ``.txt``. Nothing here imports
FiftyOne: this is plain parsing, streamed, so a huge split never sits in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yolo_ft.records import YoloFtError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})
SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train",), "test": ("test",)}


@dataclass(frozen=True)
class YoloDataset:
    """What a ``data.yaml`` says: where the root is, the class names by id, and each split's sources."""

    yaml_path: Path
    root: Path
    names: dict[int, str]
    splits: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Class names in id order (ids are 0..n-1, checked on load)."""
        return [self.names[i] for i in range(len(self.names))]


@dataclass(frozen=True)
class LabelledImage:
    """One image of a split and its ground-truth boxes in YOLO-normalised ``(class_id, cx, cy, w, h)``."""

    image: Path
    label_file: Path | None
    boxes: list[tuple[int, float, float, float, float]]


def load_data_yaml(path: str | os.PathLike) -> YoloDataset:
    """Parse ``data.yaml``; a missing file, bad YAML or bad ``names`` is a :class:`YoloFtError` naming the file."""
    yaml_path = Path(path)
    if yaml_path.is_dir():
        yaml_path = yaml_path / "data.yaml"
    if not yaml_path.is_file():
        raise YoloFtError(f"{yaml_path}: data.yaml not found")
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise YoloFtError(f"{yaml_path}: not valid YAML ({e})") from e
    if not isinstance(cfg, dict):
        raise YoloFtError(f"{yaml_path}: expected a mapping with 'names' and split keys")
    names = _parse_names(yaml_path, cfg.get("names"))
    root_value = cfg.get("path")
    root = Path(str(root_value)) if root_value else yaml_path.parent
    if not root.is_absolute():
        root = yaml_path.parent / root
    if not root.is_dir() and yaml_path.parent.joinpath("images").is_dir():
        # a dataset moved after it was written: its own folder is the root
        root = yaml_path.parent
    splits: dict[str, list[Path]] = {}
    for key in ("train", "val", "test"):
        value = cfg.get(key)
        if value in (None, ""):
            continue
        values = value if isinstance(value, list) else [value]
        sources = []
        for v in values:
            p = Path(str(v))
            sources.append(p if p.is_absolute() else root / p)
        splits[key] = sources
    return YoloDataset(yaml_path=yaml_path.resolve(), root=root.resolve(), names=names, splits=splits)


def _parse_names(yaml_path: Path, names: object) -> dict[int, str]:
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise YoloFtError(f"{yaml_path}: 'names' must be a non-empty list or id -> name mapping")
    try:
        parsed = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError) as e:
        raise YoloFtError(f"{yaml_path}: 'names' keys must be integer class ids ({e})") from e
    if sorted(parsed) != list(range(len(parsed))):
        raise YoloFtError(f"{yaml_path}: class ids in 'names' must be 0..{len(parsed) - 1}, got {sorted(parsed)}")
    if len(set(parsed.values())) != len(parsed):
        raise YoloFtError(f"{yaml_path}: duplicate class names in 'names'")
    return parsed


def resolve_split(data: YoloDataset, split: str) -> str:
    """Map ``val``/``valid``/``validation`` onto the key the yaml uses; unknown splits are an error."""
    for key in SPLIT_ALIASES.get(split, (split,)):
        canonical = "val" if key in SPLIT_ALIASES["val"] else key
        if canonical in data.splits:
            return canonical
    raise YoloFtError(f"{data.yaml_path}: no '{split}' split (has: {', '.join(data.splits) or 'none'})")


def iter_split_images(data: YoloDataset, split: str) -> Iterator[Path]:
    """Image paths of a split in a stable (sorted per source) order, streamed from disk."""
    key = resolve_split(data, split)
    for source in data.splits[key]:
        if source.is_dir():
            for dirpath, dirnames, filenames in os.walk(source):
                dirnames.sort()
                for name in sorted(filenames):
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        yield Path(dirpath) / name
        elif source.suffix == ".txt" and source.is_file():
            with source.open(encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        p = Path(line)
                        yield p if p.is_absolute() else data.root / p
        else:
            raise YoloFtError(f"{data.yaml_path}: split '{split}' source {source} does not exist")


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, the suffix ``.txt``."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        head, tail = s.rsplit(sa, 1)
        s = head + sb + tail
    return Path(s).with_suffix(".txt")


def read_labels(label_file: Path, names: dict[int, str]) -> list[tuple[int, float, float, float, float]]:
    """Parse one YOLO label file. A missing file means a negative image; a bad line is an error naming it."""
    if not label_file.is_file():
        return []
    boxes = []
    for lineno, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(float(parts[0]))
            values = [float(v) for v in parts[1:]]
        except ValueError as e:
            raise YoloFtError(f"{label_file}:{lineno}: not a YOLO label line ({line.strip()!r})") from e
        if cls not in names:
            raise YoloFtError(f"{label_file}:{lineno}: class id {cls} is not in data.yaml names")
        if len(values) == 4:
            cx, cy, w, h = values
        elif len(values) >= 6 and len(values) % 2 == 0:  # a segment: review its bounding box
            xs, ys = values[0::2], values[1::2]
            cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
            w, h = max(xs) - min(xs), max(ys) - min(ys)
        else:
            raise YoloFtError(f"{label_file}:{lineno}: expected 'class cx cy w h', got {len(parts)} values")
        if w <= 0 or h <= 0:
            raise YoloFtError(f"{label_file}:{lineno}: box has zero or negative size")
        boxes.append((cls, cx, cy, w, h))
    return boxes


def iter_labelled_images(data: YoloDataset, split: str) -> Iterator[LabelledImage]:
    """Each image of ``split`` with its parsed ground truth, one at a time."""
    for image in iter_split_images(data, split):
        label_file = label_path_for(image)
        yield LabelledImage(
            image=image.resolve(),
            label_file=label_file if label_file.is_file() else None,
            boxes=read_labels(label_file, data.names),
        )
