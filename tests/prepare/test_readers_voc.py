"""Pascal VOC reader: the real BCCD dataset (counts, splits, anomalies, coordinates) and bad input."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from yolo_ft.prepare.readers import detect_format, voc
from yolo_ft.records import Box, Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


@pytest.fixture(scope="module")
def bccd(shared_datasets: Path) -> Path:
    return shared_datasets / "bccd-blood-cells-voc" / "BCCD"


@pytest.fixture(scope="module")
def bccd_records(bccd: Path) -> list[Record]:
    records, problems = _partition(voc.read(bccd))
    assert problems == []
    return records


def test_bccd_counts_classes_and_splits(bccd: Path, bccd_records: list[Record]) -> None:
    assert detect_format(bccd) == "voc"
    assert len(bccd_records) == 364
    assert all(r.annotated for r in bccd_records)
    labels = Counter(b.label for r in bccd_records for b in r.boxes)
    assert sum(labels.values()) == 4888
    assert labels == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    assert Counter(r.split for r in bccd_records) == {"train": 205, "val": 87, "test": 72}
    assert {(r.width, r.height) for r in bccd_records} == {(640, 480)}
    # <path> holds /home/pi/...: it is ignored, the image is found next to the annotations.
    jpeg_dir = (bccd / "JPEGImages").resolve()
    assert all(r.image.parent == jpeg_dir and r.image.is_file() for r in bccd_records)
    assert all(r.source.name == r.image.stem + ".xml" for r in bccd_records)


def test_bccd_zero_area_boxes_and_exact_coordinates(bccd_records: list[Record]) -> None:
    degenerate = sorted(
        (r.source.name, b.label, b.x1, b.y1, b.x2, b.y2)
        for r in bccd_records for b in r.boxes if b.width == 0 or b.height == 0
    )
    # 1-based VOC indices minus 1 (as Ultralytics' converter does): 504 → 503.
    assert degenerate == [
        ("BloodImage_00338.xml", "RBC", 503.0, 336.0, 503.0, 336.0),
        ("BloodImage_00343.xml", "RBC", 180.0, 328.0, 180.0, 328.0),
    ]
    rec = next(r for r in bccd_records if r.source.name == "BloodImage_00338.xml")
    # <object><name>WBC</name> xmin 244 ymin 327 xmax 509 ymax 480 (truncated=1, kept).
    assert [b for b in rec.boxes if b.label == "WBC"] == [Box(243.0, 326.0, 508.0, 479.0, "WBC")]
    assert len(rec.boxes) == 14


def test_bccd_boxes_match_the_independent_csv_copy(bccd: Path, bccd_records: list[Record]) -> None:
    """test.csv repeats every box (columns xmin,xmax,ymin,ymax); ours + 1 must equal it exactly."""
    expected: Counter = Counter()
    with open(bccd.parent / "test.csv", newline="") as f:
        for row in csv.DictReader(f):
            expected[(row["filename"], row["cell_type"], int(row["xmin"]), int(row["ymin"]),
                      int(row["xmax"]), int(row["ymax"]))] += 1
    ours = Counter(
        (r.image.name, b.label, int(b.x1) + 1, int(b.y1) + 1, int(b.x2) + 1, int(b.y2) + 1)
        for r in bccd_records for b in r.boxes
    )
    assert ours == expected


def test_one_based_false_keeps_numbers_and_parent_folder_is_found(bccd: Path) -> None:
    records, problems = _partition(voc.read(bccd.parent, one_based=False))
    assert problems == [] and len(records) == 364  # VOC root found one level down
    rec = next(r for r in records if r.source.name == "BloodImage_00338.xml")
    assert Box(244.0, 327.0, 509.0, 480.0, "WBC") in rec.boxes


def _flat_copy(bccd: Path, tmp: Path, stems: list[str]) -> Path:
    flat = tmp / "flat"
    flat.mkdir()
    for s in stems:
        shutil.copy2(bccd / "Annotations" / f"{s}.xml", flat)
        shutil.copy2(bccd / "JPEGImages" / f"{s}.jpg", flat)
    return flat


def test_flat_layout_unlisted_image_and_missing_image(bccd: Path, tmp_path: Path) -> None:
    flat = _flat_copy(bccd, tmp_path, ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"])
    (flat / "BloodImage_00001.xml").unlink()  # image without annotation
    (flat / "BloodImage_00002.jpg").unlink()  # annotation without image
    assert detect_format(flat) == "voc"
    records, problems = _partition(voc.read(flat))
    by_name = {r.image.name: r for r in records}
    assert set(by_name) == {"BloodImage_00000.jpg", "BloodImage_00001.jpg"}
    assert by_name["BloodImage_00000.jpg"].annotated and len(by_name["BloodImage_00000.jpg"].boxes) > 0
    assert by_name["BloodImage_00001.jpg"].annotated is False
    assert len(problems) == 1 and problems[0].file.endswith("BloodImage_00002.xml")
    assert "not found" in problems[0].problem


def _xml(objects: str, filename: str = "a.jpg", extra: str = "") -> str:
    return (f"<annotation><filename>{filename}</filename>{extra}"
            f"<size><width>640</width><height>480</height></size>{objects}</annotation>")


def _obj(name="RBC", xmin="10", ymin="20", xmax="30", ymax="40") -> str:
    return (f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


BAD_XML = {
    "malformed.xml": ("<annotation><filename>a.jpg</filename><object>", "invalid XML"),
    "nan.xml": (_xml(_obj(xmin="nan")), "not finite"),
    "text.xml": (_xml(_obj(ymax="12px")), "not a number"),
    "nobox.xml": (_xml("<object><name>RBC</name></object>"), "no <bndbox>"),
    "noname.xml": (_xml(_obj(name="")), "no <name>"),
    "inverted.xml": (_xml(_obj(xmin="50", xmax="10")), "xmax < xmin"),
    "dotdot.xml": (_xml(_obj(), filename="../outside.jpg"), "'..'"),
    "absolute.xml": (_xml(_obj(), filename="/etc/passwd"), "absolute"),
    "badsize.xml": (_xml(_obj()).replace("<width>640", "<width>-3"), "size/width"),
    "wrongroot.xml": ("<annotations><image/></annotations>", "expected <annotation>"),
    "bomb.xml": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        "<annotation><filename>&lol3;</filename></annotation>",
        "entities",
    ),
}


def test_bad_xml_files_are_problems_naming_the_file(bccd: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy2(bccd / "JPEGImages" / "BloodImage_00000.jpg", folder / "a.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    for name, (text, _) in BAD_XML.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "good.xml").write_text(_xml(_obj(xmin="1", ymin="1", xmax="640", ymax="480")), encoding="utf-8")
    records, problems = _partition(voc.read(folder))
    assert [r.source.name for r in records if r.annotated] == ["good.xml"]
    assert records[0].boxes == [Box(0.0, 0.0, 639.0, 479.0, "RBC")]
    got = {Path(p.file).name: p.problem for p in problems}
    assert set(got) == set(BAD_XML)
    for name, (_, fragment) in BAD_XML.items():
        assert fragment in got[name], (name, got[name])
    # Each problem is about its own file; nothing outside the folder was opened as an image.
    assert all(r.image.parent == folder.resolve() for r in records)


def test_image_sets_listing_an_image_twice_is_a_problem(bccd: Path, tmp_path: Path) -> None:
    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for s in ("BloodImage_00000", "BloodImage_00001"):
        shutil.copy2(bccd / "Annotations" / f"{s}.xml", root / "Annotations")
        shutil.copy2(bccd / "JPEGImages" / f"{s}.jpg", root / "JPEGImages")
    (root / "ImageSets/Main/train.txt").write_text("BloodImage_00000\nBloodImage_00001\n")
    (root / "ImageSets/Main/val.txt").write_text("BloodImage_00001\n")
    records, problems = _partition(voc.read(root))
    assert [(r.image.name, r.split) for r in records] == [("BloodImage_00000.jpg", "train")]
    assert len(problems) == 1 and problems[0].file.endswith("BloodImage_00001.xml")
    assert "more than one" in problems[0].problem


def test_filename_with_folder_and_symlink_escape(bccd: Path, tmp_path: Path) -> None:
    flat = _flat_copy(bccd, tmp_path, ["BloodImage_00000"])
    xml = flat / "BloodImage_00000.xml"
    text = xml.read_text().replace("<filename>BloodImage", "<filename>JPEGImages/BloodImage")
    xml.write_text(text)
    records, problems = _partition(voc.read(flat))
    assert problems == [] and records[0].image == (flat / "BloodImage_00000.jpg").resolve()
    # The same image reached through a symlink that leaves the folder is refused.
    (flat / "BloodImage_00000.jpg").rename(tmp_path / "outside.jpg")
    (flat / "BloodImage_00000.jpg").symlink_to(tmp_path / "outside.jpg")
    records, problems = _partition(voc.read(flat))
    assert [r for r in records if r.annotated] == []
    assert len(problems) == 1 and problems[0].file == str(xml) and "outside the source root" in problems[0].problem
