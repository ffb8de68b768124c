"""prepare() end to end on the real BCCD Pascal VOC set (364 images, 4888 boxes, 2 zero-area boxes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from yolo_ft.prepare import prepare
from yolo_ft.records import InvalidDatasetError

BAD = ("BloodImage_00338", "BloodImage_00343")


def test_voc_strict_names_both_zero_area_boxes_then_skip_invalid(shared_datasets: Path, tmp_path: Path) -> None:
    src = shared_datasets / "bccd-blood-cells-voc"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, tmp_path / "strict")
    assert sorted(Path(p.file).name for p in e.value.problems) == [f"{b}.xml" for b in BAD]
    assert all("zero or negative area" in p.problem for p in e.value.problems)
    assert not (tmp_path / "strict").exists()

    report = prepare(src, tmp_path / "out", skip_invalid=True)
    assert report["format"] == "voc"
    assert sorted(Path(s).stem for s in report["skipped"]) == list(BAD)
    # SOURCE.md: splits train 205 / val 87 / test 72; 00338 is in train and 00343 in val (ImageSets)
    sets = {s: (src / f"BCCD/ImageSets/Main/{s}.txt").read_text().split() for s in ("train", "val", "test")}
    expected = {s: len([i for i in ids if i not in BAD]) for s, ids in sets.items()}
    assert report["images"] == expected and sum(expected.values()) == 362
    dropped = sum(len(re.findall(r"<object>", (src / f"BCCD/Annotations/{b}.xml").read_text())) for b in BAD)
    assert sum(report["boxes"].values()) == 4888 - dropped
    assert report["classes"] == ["Platelets", "RBC", "WBC"]
    assert sum(report["class_counts"].values()) == 4888 - dropped
    labels = list((tmp_path / "out/labels").rglob("*.txt"))
    assert len(labels) == 362
    assert sum(len(p.read_text().splitlines()) for p in labels) == 4888 - dropped
