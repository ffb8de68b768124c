"""The YOLO reader on every usual layout, built from small real kidney-stone subsets."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from prepare_helpers import kidney_pairs, make_layout
from yolo_ft.prepare import prepare
from yolo_ft.prepare.readers import detect_format, yolo
from yolo_ft.records import Problem, Record


def _read(source: Path, **kw) -> tuple[list[Record], list[Problem]]:
    items = list(yolo.read(source, **kw))
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


def _expected_boxes(kidney: Path, n_train: int, n_val: int) -> int:
    return sum(
        len(lbl.read_text().split("\n")) if lbl.read_text() else 0
        for split, n in (("train", n_train), ("val", n_val))
        for _, lbl in kidney_pairs(kidney, split, n)
    )


@pytest.mark.parametrize(
    "layout, splits, names",
    [
        ("images_split", {"train": 6, "val": 3}, ["0"]),  # no yaml: bare ids are the names
        ("split_images", {"train": 6, "val": 3}, ["KIDNEY_STONE"]),  # Roboflow: ../train/images, valid/
        ("nosplit", {None: 9}, ["0"]),
        ("flat", {None: 9}, ["KIDNEY_STONE"]),  # classes.txt beside the images
        ("kidney_yaml", {"train": 6, "val": 3}, ["KIDNEY_STONE"]),  # foreign absolute path:, validation, test:
    ],
)
def test_layouts(layout: str, splits: dict, names: list[str], kidney_yolo: Path, tmp_path: Path) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", layout)
    assert detect_format(src) == "yolo"
    recs, problems = _read(src)
    assert problems == []
    assert Counter(r.split for r in recs) == Counter(splits)
    assert sum(len(r.boxes) for r in recs) == _expected_boxes(kidney_yolo, 6, 3)
    assert sum(1 for r in recs if not r.boxes) == 2  # one Normal per split: annotated negatives
    assert all(r.annotated and r.width and r.height for r in recs)
    assert {b.label for r in recs for b in r.boxes} == {names[0]}
    assert (yolo.class_names(src) or ["0"]) == names

    report = prepare(src, tmp_path / "out", split="0.6,0.4,0")
    assert sum(report["images"].values()) == 9
    assert report["classes"] == names
    if None in splits:
        assert report["split"]["mode"] == "grouped"
    else:
        assert report["split"]["mode"] == "source" and report["images"] == {"train": 6, "val": 3, "test": 0}


def test_yaml_file_as_source_and_txt_image_list(kidney_yolo: Path, tmp_path: Path) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", "images_split")
    train = sorted((src / "images/train").iterdir())[:4]
    (src / "train.txt").write_text("".join(f"./images/train/{p.name}\n" for p in train))
    y = src / "my.yaml"
    y.write_text("path: /somewhere/else\ntrain: train.txt\nvalidation: images/val\nnames: [stone]\n")
    recs, problems = _read(y)
    assert problems == []
    assert Counter(r.split for r in recs) == {"train": 4, "val": 3}
    assert {b.label for r in recs for b in r.boxes} == {"stone"}
    assert yolo.class_names(y) == ["stone"]
    # absolute split paths from another machine are looked up by their tail inside the source
    y.write_text("path: /elsewhere/ds\ntrain: /elsewhere/ds/images/train\nval: /elsewhere/ds/images/val\n"
                 "names: [stone]\n")
    recs, problems = _read(y)
    assert problems == [] and Counter(r.split for r in recs) == {"train": 6, "val": 3}
    y.write_text("train: /etc\nval: images/val\nnames: [stone]\n")  # never read outside the source
    recs, problems = _read(y)
    assert Counter(r.split for r in recs) == {"val": 3}
    assert [("train" in p.problem and "not found inside the source folder" in p.problem) for p in problems] == [True]


def test_label_values_pixels_polygons_and_bad_ids(kidney_yolo: Path, tmp_path: Path) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", "images_split", n_train=3, n_val=1)
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a, 1: b}\n")
    imgs = sorted((src / "images/train").glob("STONE*"))
    w, h = Image.open(imgs[0]).size
    lbl0 = src / "labels/train" / (imgs[0].stem + ".txt")
    lbl0.write_text("1 0.25 0.5 0.1 0.2\n\n0 0.1 0.1 0.3 0.1 0.2 0.4\n")  # box + polygon (bbox kept)
    lbl1 = src / "labels/train" / (imgs[1].stem + ".txt")
    lbl1.write_text("2 0.5 0.5 0.1 0.1")  # id 2 is not in names
    recs, problems = _read(src)
    r0 = next(r for r in recs if r.image == imgs[0])
    assert [b.label for b in r0.boxes] == ["b", "a"]
    b = r0.boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((0.2 * w, 0.4 * h, 0.3 * w, 0.6 * h))
    p = r0.boxes[1]
    assert (p.x1, p.y1, p.x2, p.y2) == pytest.approx((0.1 * w, 0.1 * h, 0.3 * w, 0.4 * h))
    assert [(Path(p.file).name, "class id 2" in p.problem) for p in problems] == [(lbl1.name, True)]
    assert all(r.image != imgs[1] for r in recs)


def test_exif_orientation_gives_the_size_ultralytics_sees(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    im = Image.new("RGB", (40, 20), (120, 120, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(src / "images/rot.jpg", exif=exif)
    (src / "labels/rot.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    recs, _ = _read(src)
    assert (recs[0].width, recs[0].height) == (20, 40)  # as displayed, like ultralytics.exif_size
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.data.utils import exif_size

    assert exif_size(Image.open(src / "images/rot.jpg")) == (recs[0].width, recs[0].height)
    b = recs[0].boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((5, 15, 15, 25))


def test_missing_and_orphan_labels_and_caches(kidney_yolo: Path, tmp_path: Path) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", "images_split", n_train=3, n_val=1)
    img = sorted((src / "images/train").iterdir())[0]
    (src / "labels/train" / (img.stem + ".txt")).unlink()
    (src / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (src / "labels/train.cache").write_bytes(b"not even a pickle")
    shutil.copyfile(img, src / "images/train/notes.gif")  # not an image type Ultralytics loads: ignored
    recs, problems = _read(src)
    assert [r.annotated for r in recs if r.image == img] == [False]
    assert [(Path(p.file).name, p.problem) for p in problems] == [("orphan.txt", "label file has no matching image")]
    assert len(recs) == 4


def test_name_collisions_across_folders_are_resolved_deterministically(kidney_yolo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    pairs = kidney_pairs(kidney_yolo, "train", 4, negatives=0)
    for sub, (img, lbl) in zip(("a", "b"), pairs[:2]):
        (src / "images" / sub).mkdir(parents=True)
        (src / "labels" / sub).mkdir(parents=True)
        shutil.copyfile(img, src / "images" / sub / "x.jpg")
        shutil.copyfile(lbl, src / "labels" / sub / "x.txt")
    # y.jpg and y.png share the stem, so both read labels/a/y.txt (Ultralytics' rule) and both need a label
    Image.open(pairs[2][0]).save(src / "images/a/y.png")
    shutil.copyfile(pairs[3][0], src / "images/a/y.jpg")
    shutil.copyfile(pairs[3][1], src / "labels/a/y.txt")
    r1 = prepare(src, tmp_path / "o1", split="1,0,0", near_dup=False)
    r2 = prepare(src, tmp_path / "o2", split="1,0,0", near_dup=False)
    names1 = sorted(p.name for p in (tmp_path / "o1/images/train").iterdir())
    assert names1 == sorted(p.name for p in (tmp_path / "o2/images/train").iterdir())
    assert r1["images"]["train"] == r2["images"]["train"] == 4
    assert len({Path(n).stem for n in names1}) == 4  # every image has its own label file
    assert "x.jpg" in names1 and "y.jpg" in names1
    # the renamed x is b/x.jpg (a/ sorts first and keeps the plain name); its label is b/x.txt's boxes
    other_x = next(n for n in names1 if n.startswith("x__"))
    assert (tmp_path / "o1/images/train" / other_x).read_bytes() == (src / "images/b/x.jpg").read_bytes()
    got = (tmp_path / "o1/labels/train" / (Path(other_x).stem + ".txt")).read_text().split()
    want = (src / "labels/b/x.txt").read_text().split()
    assert [round(float(v), 5) for v in got] == [round(float(v), 5) for v in want]
