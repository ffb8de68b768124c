"""Grouped, reproducible splits: --group-by, near-duplicate groups, seeds, fractions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from prepare_helpers import kidney_pairs
from yolo_ft.prepare import prepare
from yolo_ft.prepare.phash import near_duplicate_components
from yolo_ft.prepare.split import assign_splits, parse_split
from yolo_ft.prepare.validate import inspect_image
from yolo_ft.records import YoloFtError


def test_parse_split() -> None:
    assert parse_split("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_split("8,2") == pytest.approx((0.8, 0.2, 0.0))
    for bad in ("0.8", "a,b,c", "0,0.5,0.5", "-1,1,1"):
        with pytest.raises(YoloFtError):
            parse_split(bad)


def test_assign_splits_keeps_groups_whole_and_hits_fractions() -> None:
    keys = [f"img{i:04d}.jpg" for i in range(1000)]
    groups = [i // 7 for i in range(1000)]  # 143 groups of 7
    a = assign_splits(keys, groups, (0.8, 0.1, 0.1), seed=0)
    assert a == assign_splits(list(keys), list(groups), (0.8, 0.1, 0.1), seed=0)
    assert a != assign_splits(keys, groups, (0.8, 0.1, 0.1), seed=1)
    for g in set(groups):
        assert len({a[i] for i in range(1000) if groups[i] == g}) == 1
    assert abs(a.count("train") - 800) <= 7 and abs(a.count("val") - 100) <= 7 and abs(a.count("test") - 100) <= 7
    assert "test" not in assign_splits(keys, groups, (0.9, 0.1, 0.0), seed=0)


def test_neighbouring_ct_slices_are_near_duplicates(kidney_yolo: Path) -> None:
    imgs = kidney_yolo / "datasets/images"
    s1000 = next((imgs / "train").glob("STONE---1000-_*"))
    s1001 = next((imgs / "validation").glob("STONE---1001-_*"))  # SOURCE.md's example of a leaked pair
    far = next((imgs / "train").glob("Normal---1-_*"))
    h = [inspect_image(p).phash for p in (s1000, s1001, far)]
    comps = near_duplicate_components(h)
    assert comps[0] == comps[1] and comps[2] != comps[0]


def test_group_by_keeps_patients_together(kidney_yolo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    pairs = kidney_pairs(kidney_yolo, "train", 30, negatives=4)
    for i, (img, lbl) in enumerate(pairs):
        name = f"P{i % 6:02d}_slice{i:03d}"  # 6 "patients" of 5 images each
        shutil.copyfile(img, src / "images" / f"{name}.jpg")
        shutil.copyfile(lbl, src / "labels" / f"{name}.txt")
    for seed in (0, 1, 2):
        report = prepare(src, tmp_path / f"out{seed}", split="0.6,0.2,0.2", seed=seed, group_by=r"^(P\d+)_",
                         near_dup=False)
        where: dict[str, set[str]] = {}
        for s in ("train", "val", "test"):
            for p in (tmp_path / f"out{seed}" / "images" / s).iterdir():
                where.setdefault(re.match(r"^(P\d+)_", p.name).group(1), set()).add(s)
        assert len(where) == 6 and all(len(v) == 1 for v in where.values()), where
        assert report["split"]["groups"] == 6 and report["split"]["straddling_groups"] == 0
        assert report["images"] == {"train": 20, "val": 5, "test": 5}
    one = prepare(src, tmp_path / "one", group_by=r"^(P)\d+_", near_dup=False)  # a single group of 30
    assert one["images"] == {"train": 30, "val": 0, "test": 0}
    assert sum("split is empty" in w for w in one["warnings"]) == 2
    with pytest.raises(YoloFtError, match="regular expression"):
        prepare(src, tmp_path / "bad", group_by="(unclosed")
