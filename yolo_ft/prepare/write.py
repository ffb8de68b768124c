"""Write the one output shape: images/{train,val,test}, labels/{train,val,test}, data.yaml, report.json.

Images are hard-linked (instant, no extra disk) or copied byte-for-byte — never re-encoded, so
no silent JPEG generation loss. Only records a reader renders (DICOM, 16-bit CT) are written
from the bytes the reader produced. Everything goes into the directory the caller gives (a temp
dir from ``atomic_output_dir``), so the final dataset appears in one move.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from yolo_ft.records import Record
from yolo_ft.utils.atomic import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


def make_dirs(root: Path) -> None:
    for kind in ("images", "labels"):
        for s in SPLITS:
            (root / kind / s).mkdir(parents=True, exist_ok=True)


def output_names(samples: Sequence, keys: Sequence[str]) -> list[str]:
    """A unique output file name per sample (``image``, ``render``, ``render_suffix``), stable for the same inputs.

    The source file name is kept where possible. Names whose stems collide (same name in two
    source folders, or ``a.jpg`` + ``a.png`` which would share ``a.txt``) get a short hash of
    their source path; comparison is case-insensitive so the dataset survives a copy to macOS or
    Windows.
    """
    order = sorted(range(len(samples)), key=lambda i: keys[i])
    taken: set[str] = set()
    out = [""] * len(samples)
    for i in order:
        r = samples[i]
        img = Path(r.image)
        suffix = (r.render_suffix or ".png") if r.render is not None else img.suffix
        base = img.stem if r.render is None else img.stem.removesuffix(".dcm")
        stem = base
        if stem.lower() in taken:
            h = hashlib.sha1(keys[i].encode("utf-8", "backslashreplace")).hexdigest()[:8]
            stem = f"{base}__{h}"
            k = 1
            while stem.lower() in taken:
                stem = f"{base}__{h}_{k}"
                k += 1
        taken.add(stem.lower())
        out[i] = f"{stem}{suffix}"
    return out


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst``, else copy the bytes; returns "link" or "copy"."""
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copyfile(src, dst)
        return "copy"


def yolo_lines(record: Record, class_index: dict[str, int]) -> str:
    """Normalised ``class cx cy w h`` lines (6 decimals: sub-pixel on a 100k-px image)."""
    w, h = float(record.width), float(record.height)
    lines = []
    for b in record.boxes:
        cx, cy = (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h
        bw, bh = (b.x2 - b.x1) / w, (b.y2 - b.y1) / h
        lines.append(f"{class_index[b.label]} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_sample(root: Path, record: Record, split: str, name: str, class_index: dict[str, int]) -> str:
    """Write one image (link/copy/render) and its label file; returns how the image got there."""
    img_dst = root / "images" / split / name
    if record.render is not None:
        img_dst.write_bytes(record.render())
        how = "render"
    else:
        how = link_or_copy(Path(record.image), img_dst)
    (root / "labels" / split / (Path(name).stem + ".txt")).write_text(yolo_lines(record, class_index), encoding="utf-8")
    return how


def write_data_yaml(root: Path, final_path: Path, names: Sequence[str], counts: dict[str, int]) -> None:
    """Ultralytics data.yaml; ``path`` is where the dataset will live after the final move."""
    data = {
        "path": str(Path(final_path).absolute()),
        "train": "images/train",
        "val": "images/val",
        "test": "images/test" if counts.get("test") else None,
        "names": {i: n for i, n in enumerate(names)},
    }
    text = "# Written by yolo-ft prepare; see report.json for counts, problems and warnings.\n"
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(body) != data:  # PyYAML folds e.g. U+0085 inside quoted names: escape them instead
        body = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    text += body
    atomic_write_text(root / "data.yaml", text)


def write_report(root: Path, report: dict) -> None:
    atomic_write_json(root / "report.json", report)
