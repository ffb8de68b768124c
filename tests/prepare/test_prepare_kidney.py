"""prepare() on the full real kidney-stone CT YOLO set (642 images): counts, boxes, yaml, leakage.

Expected numbers come from the dataset's SOURCE.md, not from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from prepare_helpers import read_label_px
from yolo_ft.prepare import prepare
from yolo_ft.prepare.validate import inspect_image

KNOWN = "STONE---1062-_jpg.rf.ee32ac653419b03b4c9f79600e6558e9"


@pytest.fixture(scope="module")
def kept(kidney_yolo: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("kidney") / "ds"
    return out, prepare(kidney_yolo, out)


def test_counts_match_source_md(kept) -> None:
    out, report = kept
    assert report["format"] == "yolo"
    assert report["images"] == {"train": 500, "val": 142, "test": 0}
    assert sum(report["boxes"].values()) == 899
    assert report["negatives"] == {"train": 44, "val": 12, "test": 0}  # 56 empty label files
    assert report["classes"] == ["KIDNEY_STONE"]
    assert report["problems"] == [] and report["skipped"] == []
    assert report["split"]["mode"] == "source"
    assert len(list((out / "images/train").iterdir())) == 500
    assert len(list((out / "labels/val").iterdir())) == 142
    assert json.loads((out / "report.json").read_text())["images"] == report["images"]
    # the STONE image with an empty label file stays a negative, its label empty
    stone139 = next((out / "labels/train").glob("STONE---139-_jpg.rf.56297823*.txt"))
    assert stone139.read_text() == ""
    assert not list(out.rglob("*.cache"))


def test_known_box_survives_round_trip(kept, kidney_yolo: Path) -> None:
    out, _ = kept
    src = (kidney_yolo / f"datasets/labels/train/{KNOWN}.txt").read_text().split("\n")[0].split()
    cx, cy, w, h = (float(v) * 512 for v in src[1:])
    expected = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    boxes = read_label_px(out / f"labels/train/{KNOWN}.txt", 512, 512)
    assert len(boxes) == 4
    assert boxes[0][0] == 0
    assert np.allclose(boxes[0][1:], expected, atol=1e-3 * 512 / 512 + 5e-4)
    assert np.allclose(boxes[0][1:], (317.81, 266.16, 333.35, 281.54), atol=0.01)


def test_images_are_byte_identical_and_yaml_loads(kept, kidney_yolo: Path) -> None:
    out, report = kept
    src = kidney_yolo / f"datasets/images/train/{KNOWN}.jpg"
    assert (out / f"images/train/{KNOWN}.jpg").read_bytes() == src.read_bytes()  # never re-encoded
    assert report["files"]["linked"] + report["files"]["copied"] == 642

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["nc"] == 1 and data["names"] == {0: "KIDNEY_STONE"}
    assert Path(data["train"]) == out / "images/train" and Path(data["val"]) == out / "images/val"
    raw = yaml.safe_load((out / "data.yaml").read_text())
    assert raw["path"] == str(out) and raw["names"] == {0: "KIDNEY_STONE"}

    # Ultralytics' own loader finds every image and box we wrote, with the same pixel sizes
    from ultralytics.data.dataset import YOLODataset

    ds = YOLODataset(img_path=data["val"], data=data, task="detect", imgsz=64, augment=False, cache=False)
    assert len(ds.labels) == report["images"]["val"] == 142
    assert sum(len(lb["cls"]) for lb in ds.labels) == report["boxes"]["val"]
    known = next(lb for lb in ds.labels if Path(lb["im_file"]).stem.startswith("STONE---1001-"))
    from PIL import Image

    w, h = Image.open(known["im_file"]).size
    assert tuple(known["shape"]) == (h, w)


def test_kept_split_leak_is_counted_and_warned(kept) -> None:
    _, report = kept
    twins = report["near_duplicates"]["with_twin_in_other_split"]["val"]["train"]
    # SOURCE.md: 120 of 142 validation images have a near-identical training image (pixel criterion)
    assert 105 <= twins <= 140, twins
    assert any(f"{twins} of 142 val images have a near-duplicate in train" in w for w in report["warnings"])
    assert report["split"]["straddling_groups"] > 0


def _split_files(out: Path) -> dict[str, list[str]]:
    return {s: sorted(p.name for p in (out / "images" / s).iterdir()) for s in ("train", "val", "test")}


def test_resplit_is_grouped_reproducible_and_leak_free(kidney_yolo: Path, tmp_path: Path) -> None:
    r1 = prepare(kidney_yolo, tmp_path / "a", resplit=True, seed=3)
    r2 = prepare(kidney_yolo, tmp_path / "b", resplit=True, seed=3)
    r3 = prepare(kidney_yolo, tmp_path / "c", resplit=True, seed=4)
    a, b, c = _split_files(tmp_path / "a"), _split_files(tmp_path / "b"), _split_files(tmp_path / "c")
    assert a == b and r1["images"] == r2["images"] and r1["boxes"] == r2["boxes"]  # same seed, same split
    assert a != c  # another seed, another split
    assert r1["split"]["mode"] == "grouped" and r1["split"]["straddling_groups"] == 0
    assert sum(r1["images"].values()) == 642 and sum(r1["boxes"].values()) == 899
    assert abs(r1["images"]["train"] / 642 - 0.8) < 0.05
    assert r1["images"]["val"] > 30 and r1["images"]["test"] > 30
    assert r3["split"]["straddling_groups"] == 0
    # Independent check: no image has a near-twin (pHash within the threshold) in another split.
    thr = r1["near_duplicates"]["threshold"]
    hashes, splits = [], []
    for s, names in a.items():
        for n in names:
            hashes.append(inspect_image(tmp_path / "a" / "images" / s / n).phash)
            splits.append(s)
    h = np.array(hashes, dtype=np.uint64)
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    sp = np.array(splits)
    cross = (d <= thr) & (sp[:, None] != sp[None, :])
    assert not cross.any()
    assert ((d <= thr) & ~np.eye(len(h), dtype=bool)).sum() > 1000  # and there were plenty of near-twins
