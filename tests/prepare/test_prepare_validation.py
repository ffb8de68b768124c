"""Bad input: strict mode lists every problem and writes nothing; --skip-invalid writes the rest.

Faults are injected into small real subsets copied to tmp.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from prepare_helpers import make_layout
from yolo_ft.prepare import prepare
from yolo_ft.records import InvalidDatasetError, YoloFtError


@pytest.fixture()
def src(kidney_yolo: Path, tmp_path: Path) -> Path:
    root = make_layout(kidney_yolo, tmp_path / "src", "images_split", n_train=8, n_val=3)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: KIDNEY_STONE}\n")
    return root


def _stones(src: Path, split: str = "train") -> list[Path]:
    return sorted((src / "images" / split).glob("STONE*.jpg"))


def _label(img: Path) -> Path:
    return Path(str(img).replace("/images/", "/labels/")).with_suffix(".txt")


def _no_leftovers(parent: Path) -> None:
    assert not [p for p in parent.iterdir() if p.name.startswith(".out")], list(parent.iterdir())


class Marker:
    """Unpickling this creates a file: proof that a cache was (never) loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_strict_lists_every_problem_and_writes_nothing(src: Path, tmp_path: Path) -> None:
    stones = _stones(src)
    corrupt, oob, unknown = stones[0], stones[1], stones[2]
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])  # truncated JPEG
    _label(oob).write_text("0 0.95 0.5 0.3 0.2\n")  # reaches 51.2 px past the right edge of 512
    _label(unknown).write_text("3 0.5 0.5 0.1 0.1\n")  # class 3 in a 1-class dataset
    (src / "data.yaml").write_text("path: .\ntrain: train.txt\nval: images/val\nnames: {0: KIDNEY_STONE}\n")
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(stones[3], outside)
    lines = [f"images/train/{p.name}" for p in sorted((src / "images/train").iterdir())] + ["../outside.jpg"]
    (src / "train.txt").write_text("\n".join(lines) + "\n")
    marker = tmp_path / "pwned"
    (src / "labels" / "train.cache").write_bytes(pickle.dumps(Marker(str(marker))))

    out = tmp_path / "out"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, out)
    by_file = {Path(p.file).name: p.problem for p in e.value.problems}
    assert "truncated" in by_file[corrupt.name]
    assert "outside the 512x512 image by 51.2 px" in by_file[_label(oob).name]
    assert "class id 3 is not in the dataset's names" in by_file[_label(unknown).name]
    assert "'..'" in by_file["train.txt"] and "../outside.jpg" in by_file["train.txt"]
    assert len(e.value.problems) == 4
    assert not out.exists()
    _no_leftovers(tmp_path)
    assert not marker.exists()  # the pickle cache was never loaded

    report = prepare(src, out, skip_invalid=True)
    skipped = {Path(s).name for s in report["skipped"]}
    # an image whose record was read is skipped by image name; a label the reader rejected by its own name
    assert skipped == {corrupt.name, oob.name, _label(unknown).name, "train.txt"}
    assert len(report["problems"]) == 4
    assert report["images"] == {"train": 5, "val": 3, "test": 0}
    assert not (out / "images/train" / corrupt.name).exists()
    assert not (out / "images/train" / oob.name).exists()
    assert json.loads((out / "report.json").read_text())["skipped"] == report["skipped"]
    assert not list(out.rglob("*.cache")) and not marker.exists()


def test_small_overhang_is_clipped_and_noted(src: Path, tmp_path: Path) -> None:
    img = _stones(src)[0]
    _label(img).write_text("0 0.9 0.5 0.2 0.1\n")  # x2 = 1.0 * 512 exactly: fine
    img2 = _stones(src)[1]
    _label(img2).write_text("0 0.9005 0.5 0.2 0.1\n")  # 0.256 px past the edge: clipped
    report = prepare(src, tmp_path / "out")
    assert report["problems"] == []
    notes = [n for n in report["notes"] if Path(n["file"]).name == _label(img2).name]
    assert len(notes) == 1 and "clipped" in notes[0]["note"]
    line = (tmp_path / "out/labels/train" / _label(img2).name).read_text().split()
    cx, w = float(line[1]), float(line[3])
    assert cx + w / 2 == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "fault, expect",
    [
        ("zero_area", "zero or negative area"),
        ("nan", "NaN or infinite coordinate"),
        ("missing_label", "no annotation entry"),
        ("orphan_label", "no matching image"),
        ("duplicate", "duplicate file: identical content to"),
        ("spaced_name", "whitespace"),
        ("non_utf8_name", "not valid UTF-8"),
        ("symlink_out", "outside the source root"),
        ("not_image", "not a readable image"),
    ],
)
def test_each_fault_is_a_named_problem(fault: str, expect: str, src: Path, tmp_path: Path) -> None:
    img = _stones(src)[0]
    culprit = img
    if fault == "zero_area":
        _label(img).write_text("0 0.5 0.5 0 0.1\n")
        culprit = _label(img)
    elif fault == "nan":
        _label(img).write_text("0 nan 0.5 0.1 0.1\n")
        culprit = _label(img)
    elif fault == "missing_label":
        _label(img).unlink()
    elif fault == "orphan_label":
        culprit = src / "labels/train/ghost.txt"
        culprit.write_text("0 0.5 0.5 0.1 0.1\n")
    elif fault == "duplicate":
        culprit = img.with_name("zzz_copy.jpg")
        shutil.copyfile(img, culprit)
        shutil.copyfile(_label(img), _label(culprit))
    elif fault == "spaced_name":
        culprit = img.with_name("STONE copy 1.jpg")
        img.rename(culprit)
        _label(img).rename(_label(culprit))
    elif fault == "non_utf8_name":
        os.rename(os.fsencode(img), os.fsencode(img.parent) + b"/bad\xff.jpg")
        os.rename(os.fsencode(_label(img)), os.fsencode(_label(img).parent) + b"/bad\xff.txt")
        culprit = img.with_name(os.fsdecode(b"bad\xff.jpg"))
    elif fault == "symlink_out":
        outside = tmp_path / "elsewhere.jpg"
        shutil.copyfile(_stones(src)[1], outside)
        culprit = src / "images/train/link.jpg"
        culprit.symlink_to(outside)
        shutil.copyfile(_label(_stones(src)[1]), _label(culprit))
    elif fault == "not_image":
        img.write_bytes(b"this is not a jpeg at all")
    out = tmp_path / "out"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, out)
    assert not out.exists()
    shown = culprit.name.encode("utf-8", "backslashreplace").decode()  # how reports spell odd bytes
    hits = [p for p in e.value.problems if Path(p.file).name == shown and expect in p.problem]
    assert hits, e.value.problems
    assert len(e.value.problems) == 1, e.value.problems
    report = prepare(src, out, skip_invalid=True)
    reader_level = fault in {"nan", "orphan_label", "symlink_out"}  # no record: the named file is skipped
    expected_skip = e.value.problems[0].file if reader_level else str(culprit if fault != "zero_area" else img)
    assert report["skipped"] == [expected_skip]
    json.loads((out / "report.json").read_text())  # odd names still give valid JSON
    # 11 good images, minus the one damaged original (extra files such as the duplicate are just dropped)
    damaged = fault in {"nan", "zero_area", "missing_label", "spaced_name", "not_image", "non_utf8_name"}
    assert sum(report["images"].values()) == 11 - damaged


def test_overwrite_is_required_and_replaces(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(src, out)
    (out / "stale.txt").write_text("old")
    with pytest.raises(YoloFtError, match="already exists; pass --overwrite"):
        prepare(src, out, seed=1)
    assert (out / "stale.txt").exists()
    report = prepare(src, out, overwrite=True)
    assert not (out / "stale.txt").exists() and report["images"]["train"] == 8
    with pytest.raises(YoloFtError, match="outside the source"):
        prepare(src, src / "prepared")


def test_classes_sets_order_and_unknown_class_is_a_problem(src: Path, tmp_path: Path) -> None:
    report = prepare(src, tmp_path / "a", classes="background_thing,KIDNEY_STONE")
    assert report["classes"] == ["background_thing", "KIDNEY_STONE"]
    lines = [ln for p in (tmp_path / "a/labels/train").iterdir() for ln in p.read_text().splitlines()]
    assert lines and all(ln.startswith("1 ") for ln in lines)  # KIDNEY_STONE is now id 1
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, tmp_path / "b", classes="stone")
    assert all("unknown class(es) 'KIDNEY_STONE'" in p.problem for p in e.value.problems)
    assert len(e.value.problems) == 9  # every image with a box (11 minus 2 Normal negatives)


def test_fast_mode_still_finds_duplicates_and_corrupt_headers(src: Path, tmp_path: Path) -> None:
    """verify_images=False, near_dup=False (header-only label conversion) keeps the cheap checks."""
    stones = _stones(src)
    dup = stones[0].with_name("zzz_copy.jpg")
    shutil.copyfile(stones[0], dup)
    shutil.copyfile(_label(stones[0]), _label(dup))
    stones[1].write_bytes(b"\x89PNG garbage")
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, tmp_path / "out", verify_images=False, near_dup=False)
    got = sorted((Path(p.file).name, p.problem.split(":")[0].split(" (")[0]) for p in e.value.problems)
    assert got == sorted([("zzz_copy.jpg", "duplicate file"), (stones[1].name, "not a readable image")])


def test_check_record_size_mismatch_and_exif_rotation(src: Path, tmp_path: Path) -> None:
    """Reader-given sizes are checked against the file; boxes in stored pixels are rotated like Ultralytics."""
    from PIL import Image

    from yolo_ft.prepare.validate import check_record
    from yolo_ft.records import Box, Record

    img = _stones(src)[0]
    c = check_record(Record(image=img, boxes=[Box(1, 1, 5, 5, "a")], width=640, height=480, source=img),
                     roots=[src])
    assert [p.problem for p in c.problems] == [f"annotation says the image is 640x480 but {img.name} is 512x512"]

    rot = src / "images/train/rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    Image.new("RGB", (40, 20), (90, 90, 90)).save(rot, exif=exif)
    stored = Record(image=rot, boxes=[Box(0, 0, 10, 5, "a")], width=40, height=20, exif_transposed=False)
    c = check_record(stored, roots=[src])
    assert c.ok and (c.record.width, c.record.height) == (20, 40)
    b = c.record.boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2) == (15, 0, 20, 10)  # top-left corner of stored → top-right of displayed
    assert "EXIF orientation 6" in c.notes[0].problem


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_box_transform_matches_pil_exif_transpose(orientation: int, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image, ImageOps

    from yolo_ft.prepare.validate import exif_transform_boxes
    from yolo_ft.records import Box

    a = np.zeros((20, 40), np.uint8)
    a[2:5, 3:10] = 255  # a bright box x 3..10, y 2..5 in stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / "o.jpg", exif=exif, quality=100)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")))
    ys, xs = np.nonzero(shown > 128)
    b = exif_transform_boxes([Box(3, 2, 10, 5, "a")], orientation, 40, 20)[0]
    assert (b.x1, b.y1, b.x2, b.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_interrupted_write_leaves_nothing_and_keeps_the_old_dataset(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def interrupt(stage: str, done: int, total) -> None:
        if stage == "write":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, progress=interrupt)
    assert not out.exists()
    _no_leftovers(tmp_path)
    first = prepare(src, out)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, overwrite=True, resplit=True, progress=interrupt)
    assert json.loads((out / "report.json").read_text())["images"] == first["images"]  # old one intact
    assert len(list((out / "images/train").iterdir())) == 8
    _no_leftovers(tmp_path)
