"""COCO reader on hand-written COCO JSON over real images: splits, names, negatives, crowd, bad input.

FiftyOne-written COCO is covered in test_readers_fiftyone.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from yolo_ft.prepare.readers import coco, detect_format
from yolo_ft.records import Box, Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


@pytest.fixture()
def coco_dir(kidney_yolo: Path, tmp_path: Path) -> Path:
    """train.json + val.json over 4 real CT images in images/, one extra unlisted image."""
    src = kidney_yolo / "datasets/images/train"
    names = sorted(p.name for p in src.iterdir() if p.name.startswith("STONE"))[:4]
    names.append(sorted(p.name for p in src.iterdir() if p.name.startswith("Normal"))[0])
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    for n in names:
        shutil.copy2(src / n, root / "images" / n)
    cats = [{"id": 7, "name": "KIDNEY_STONE", "supercategory": "finding"}, {"id": 3, "name": "Left kidney"}]
    train = {
        "info": {}, "licenses": [], "categories": cats,
        "images": [
            {"id": 10, "file_name": names[0], "width": 512, "height": 512},
            {"id": 11, "file_name": names[1], "width": 512, "height": 512},
            {"id": 12, "file_name": names[4], "width": 512, "height": 512},  # listed, no annotation
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [100.5, 200.25, 20, 10.5], "iscrowd": 0, "area": 1},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [50, 60, 150, 100], "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 7, "bbox": [0, 0, 512, 512], "iscrowd": 1},
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [300, 310, 5, 6]},
        ],
    }
    val = {"categories": cats, "images": [{"id": 1, "file_name": names[2]}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": ["12", 13.0, 14, 15]}]}
    (root / "train.json").write_text(json.dumps(train))
    (root / "instances_val2017.json").write_text(json.dumps(val))
    (root / "notes.json").write_text(json.dumps({"hello": "not coco"}))
    return root


def test_reads_splits_names_negatives_and_unlisted(coco_dir: Path) -> None:
    assert detect_format(coco_dir) == "coco"
    records, problems = _partition(coco.read(coco_dir))
    assert problems == []
    by = {r.image.name: r for r in records}
    names = sorted(p.name for p in (coco_dir / "images").iterdir())
    stones = [n for n in names if n.startswith("STONE")]
    normal = next(n for n in names if n.startswith("Normal"))
    assert set(by) == set(names)
    first = by[stones[0]]
    assert first.split == "train" and first.annotated and (first.width, first.height) == (512, 512)
    assert first.boxes == [Box(100.5, 200.25, 120.5, 210.75, "KIDNEY_STONE"), Box(50, 60, 200, 160, "Left kidney")]
    assert first.source == coco_dir / "train.json"
    # iscrowd annotation skipped by default, the ordinary one kept.
    assert by[stones[1]].boxes == [Box(300, 310, 305, 316, "KIDNEY_STONE")]
    assert by[normal].annotated and by[normal].boxes == [] and by[normal].split == "train"  # negative
    assert by[stones[2]].split == "val" and by[stones[2]].width is None
    assert by[stones[2]].boxes == [Box(12, 13, 26, 28, "KIDNEY_STONE")]
    assert by[stones[3]].annotated is False  # in images/ but in no JSON
    assert coco.class_names(coco_dir) == ["Left kidney", "KIDNEY_STONE"]  # category id order (3, 7)


def test_crowd_keep_and_single_file_and_images_option(coco_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.move(coco_dir / "images", moved)
    records, problems = _partition(coco.read(coco_dir / "train.json", images=moved, crowd="keep"))
    assert problems == []
    crowd = [r for r in records if len(r.boxes) == 2 and r.boxes[0] == Box(0, 0, 512, 512, "KIDNEY_STONE")]
    assert len(crowd) == 1
    assert all(r.image.parent == moved.resolve() for r in records)
    # Without --images the moved images are not found: one problem per listed image, naming the JSON.
    records, problems = _partition(coco.read(coco_dir / "train.json"))
    assert records == [] and len(problems) == 3
    assert all(p.file.endswith("train.json") and "not found" in p.problem for p in problems)


def _write(tmp: Path, name: str, data) -> Path:
    p = tmp / name
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def _base(image: str) -> dict:
    return {"categories": [{"id": 1, "name": "stone"}],
            "images": [{"id": 1, "file_name": image, "width": 512, "height": 512}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["annotations"][0].update(category_id=99), "unknown category_id 99"),
        (lambda d: d["annotations"][0].update(image_id=5), "unknown image_id 5"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, float("nan"), 4]), "not finite"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "wide", 4]), "not a number"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "negative width"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "bbox must be"),
        (lambda d: d["annotations"][0].update(bbox=[True, 2, 3, 4]), "not a number"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "duplicate annotation id 1"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 1"),
        (lambda d: d["categories"].append({"id": 1, "name": "other"}), "duplicate category id 1"),
        (lambda d: d["categories"].append({"id": 2}), "categories[1]"),
        (lambda d: d["images"][0].update(file_name="../outside.jpg"), "'..'"),
        (lambda d: d["images"][0].update(file_name="/etc/passwd"), "absolute"),
        (lambda d: d["images"][0].update(width=-1), "width"),
        (lambda d: d.pop("annotations"), "'annotations'"),
        (lambda d: d["annotations"].append("oops"), "annotations[1]"),
    ],
)
def test_bad_coco_is_a_problem_naming_the_file(kidney_yolo: Path, tmp_path: Path, mutate, fragment: str) -> None:
    img = next((kidney_yolo / "datasets/images/train").iterdir())
    root = tmp_path / "ds"
    root.mkdir()
    shutil.copy2(img, root / "a.jpg")
    shutil.copy2(img, tmp_path / "outside.jpg")
    data = _base("a.jpg")
    mutate(data)
    jf = _write(root, "labels.json", data)
    records, problems = _partition(coco.read(jf))
    assert problems, "expected a problem"
    assert all(p.file == str(jf) for p in problems)
    assert any(fragment in p.problem for p in problems), [p.problem for p in problems]
    # An image whose labels are incomplete or ambiguous is never yielded with a missing box.
    # (When the only annotation points at another image, a.jpg is what COCO says it is: a negative.)
    expected = [] if fragment.startswith("unknown image_id") else [Box(1, 2, 4, 6, "stone")]
    assert all(r.image.name == "a.jpg" and r.boxes == expected for r in records)
    assert all(r.image.parent == root.resolve() for r in records)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "top level"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}".decode("latin-1"), "not valid JSON"),
        ('{"images": [], "annotations": [], "categories": [{"id": NaN, "name": "x"}]}', "categories[0]"),
    ],
)
def test_malformed_json_is_a_problem(tmp_path: Path, text: str, fragment: str) -> None:
    jf = _write(tmp_path, "broken.json", text)
    records, problems = _partition(coco.read(jf))
    assert records == []
    assert len(problems) == 1 and problems[0].file == str(jf) and fragment in problems[0].problem


def test_empty_folder_is_a_problem(tmp_path: Path) -> None:
    assert not coco.sniff(tmp_path)
    records, problems = _partition(coco.read(tmp_path))
    assert records == [] and "no COCO JSON" in problems[0].problem


def test_symlink_leaving_the_root_is_refused(kidney_yolo: Path, tmp_path: Path) -> None:
    img = next((kidney_yolo / "datasets/images/train").iterdir())
    root = tmp_path / "ds"
    (root / "data").mkdir(parents=True)
    shutil.copy2(img, tmp_path / "secret.jpg")
    (root / "data" / "inside.jpg").symlink_to(tmp_path / "secret.jpg")
    jf = _write(root, "labels.json", _base("inside.jpg"))
    records, problems = _partition(coco.read(jf))
    assert [r for r in records if r.annotated] == []
    assert len(problems) == 1 and problems[0].file == str(jf) and "outside the source root" in problems[0].problem
