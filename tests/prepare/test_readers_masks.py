"""Mask reader: the real KSSD2025 masks (component counts from SOURCE.md, exact boxes against an
independent flood fill) and synthetic palette / indexed / broken masks."""

from __future__ import annotations

import shutil
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo_ft.prepare.readers import detect_format, masks
from yolo_ft.records import Box, Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


@pytest.fixture(scope="module")
def kssd(shared_datasets: Path) -> Path:
    return shared_datasets / "kssd2025-kidney-stone-masks"


@pytest.fixture(scope="module")
def kssd_records(kssd: Path) -> list[Record]:
    records, problems = _partition(masks.read(kssd))
    assert problems == []
    return records


def _flood_fill_boxes(fg: np.ndarray, connectivity: int) -> list[tuple[int, int, int, int]]:
    """Independent reference: breadth-first labelling in plain Python, pixel-edge xyxy boxes."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    seen = np.zeros(fg.shape, bool)
    boxes = []
    for y, x in zip(*np.nonzero(fg)):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, ys, xs = deque([(y, x)]), [], []
        while queue:
            cy, cx = queue.popleft()
            ys.append(cy)
            xs.append(cx)
            for dy, dx in steps:
                ny, nx = cy + dy, cx + dx
                if 0 <= ny < fg.shape[0] and 0 <= nx < fg.shape[1] and fg[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        boxes.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return sorted(boxes)


def test_kssd_layout_counts_and_defaults(kssd: Path, kssd_records: list[Record]) -> None:
    assert detect_format(kssd) == "masks"
    assert len(kssd_records) == 321
    assert all(r.annotated and r.boxes for r in kssd_records)  # SOURCE.md: no empty masks
    assert sum(len(r.boxes) for r in kssd_records) == 847  # > 127, 8-connectivity
    assert {b.label for r in kssd_records for b in r.boxes} == {"object"}
    assert {(r.width, r.height) for r in kssd_records} == {(512, 512)}
    assert all(r.image.suffix == ".tif" and r.image.parent.name == "image" for r in kssd_records)
    assert all(r.source.name == r.image.name and r.source.parent.name == "label" for r in kssd_records)
    hist = Counter(len(r.boxes) for r in kssd_records)
    assert hist == {1: 119, 2: 83, 3: 28, 4: 29, 5: 31, 6: 13, 7: 15, 8: 3}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"connectivity": 4}, 861),
        ({"threshold": 0}, 7875),  # the 0-8 noise becomes thousands of fake objects
        ({"min_area": 2}, 847 - 9),  # 9 single-pixel components
        ({"min_area": 5, "mask_class": "stone"}, 847 - 74),  # 74 components of 4 px or less
    ],
)
def test_kssd_options_change_component_counts(kssd: Path, options: dict, expected: int) -> None:
    records, problems = _partition(masks.read(kssd / "data", images=kssd / "data/image",
                                              masks=kssd / "data/label", **options))
    assert problems == [] and len(records) == 321
    assert sum(len(r.boxes) for r in records) == expected
    if "mask_class" in options:
        assert {b.label for r in records for b in r.boxes} == {"stone"}


def test_kssd_boxes_equal_an_independent_flood_fill(kssd_records: list[Record]) -> None:
    one = next(r for r in kssd_records if len(r.boxes) == 1)
    arr = np.asarray(Image.open(one.source))
    ys, xs = np.nonzero(arr > 127)
    assert one.boxes == [Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), "object")]
    busiest = sorted(kssd_records, key=lambda r: (-len(r.boxes), r.image.name))[:3]
    for rec in busiest:
        arr = np.asarray(Image.open(rec.source))
        ours = sorted((int(b.x1), int(b.y1), int(b.x2), int(b.y2)) for b in rec.boxes)
        assert ours == _flood_fill_boxes(arr > 127, 8)
        four = masks.boxes_from_array(arr, connectivity=4)
        assert sorted((int(b.x1), int(b.y1), int(b.x2), int(b.y2)) for b in four) == _flood_fill_boxes(arr > 127, 4)


def test_kssd_first_box_exact(kssd_records: list[Record]) -> None:
    rec = next(r for r in kssd_records if r.image.name == "290.tif")
    arr = np.asarray(Image.open(rec.source))
    assert Image.open(rec.source).mode == "P"
    assert sorted((b.x1, b.y1, b.x2, b.y2) for b in rec.boxes) == [
        tuple(float(v) for v in b) for b in _flood_fill_boxes(arr > 127, 8)
    ]


def _copy_pairs(kssd: Path, dst: Path, names: list[str]) -> Path:
    for sub in ("image", "label"):
        (dst / sub).mkdir(parents=True)
        for n in names:
            shutil.copy2(kssd / "data" / sub / n, dst / sub / n)
    return dst


def test_pairing_problems_and_negatives(kssd: Path, tmp_path: Path) -> None:
    root = _copy_pairs(kssd, tmp_path / "ds", ["290.tif", "291.tif", "292.tif", "293.tif"])
    (root / "label" / "291.tif").unlink()  # image without mask
    (root / "image" / "292.tif").unlink()  # mask without image
    Image.new("L", (100, 100)).save(root / "label" / "293.tif")  # size mismatch
    (root / "label" / "294.tif").write_bytes(b"II*\x00garbage")  # corrupt mask, no image either
    shutil.copy2(kssd / "data/image/295.tif", root / "image" / "294.tif")
    empty = np.zeros((512, 512), np.uint8)
    shutil.copy2(kssd / "data/image/296.tif", root / "image" / "296.tif")
    Image.fromarray(empty).save(root / "label" / "296_mask.png")  # all background, _mask suffix
    records, problems = _partition(masks.read(root))
    by = {r.image.name: r for r in records}
    assert set(by) == {"290.tif", "291.tif", "296.tif"}
    assert by["290.tif"].annotated and len(by["290.tif"].boxes) >= 1
    assert by["291.tif"].annotated is False
    assert by["296.tif"].annotated is True and by["296.tif"].boxes == []  # a negative
    got = {Path(p.file).name: p.problem for p in problems}
    assert set(got) == {"292.tif", "293.tif", "294.tif"}
    assert "no image" in got["292.tif"]
    assert "100x100" in got["293.tif"] and "512x512" in got["293.tif"]
    assert "cannot read mask" in got["294.tif"]


def test_palette_masks_are_read_by_index(tmp_path: Path, kssd: Path) -> None:
    """A P mask whose palette colours are not grey: classes come from indices, not RGB."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    shutil.copy2(kssd / "data/image/290.tif", tmp_path / "images" / "scan one.tif")
    idx = np.zeros((512, 512), np.uint8)
    idx[10:20, 30:45] = 1
    idx[100:101, 200:201] = 2
    idx[300:310, 300:310] = 1
    idx[0:5, 0:512] = 255  # VOC-style void border
    im = Image.fromarray(idx, mode="P")
    palette = [0, 0, 0, 200, 0, 0, 0, 180, 0] + [0] * (3 * 252) + [255, 255, 255]
    im.putpalette(palette)
    im.save(tmp_path / "masks" / "scan one.png")
    records, problems = _partition(
        masks.read(tmp_path, images=tmp_path / "images", masks=tmp_path / "masks", mask_classes="1:stone,2:cyst")
    )
    assert problems == []
    assert sorted((b.label, b.x1, b.y1, b.x2, b.y2) for b in records[0].boxes) == [
        ("cyst", 200.0, 100.0, 201.0, 101.0),
        ("stone", 30.0, 10.0, 45.0, 20.0),
        ("stone", 300.0, 300.0, 310.0, 310.0),
    ]
    # Unmapped index → a problem naming the mask; default names are the index values.
    records, problems = _partition(masks.read(tmp_path / "images", masks=tmp_path / "masks", mask_classes={1: "stone"}))
    assert records == [] and "value 2" in problems[0].problem and problems[0].file.endswith("scan one.png")
    records, _ = _partition(masks.read(tmp_path / "images", masks=tmp_path / "masks", mask_type="indexed"))
    assert Counter(b.label for b in records[0].boxes) == {"1": 2, "2": 1}


def test_colour_and_one_bit_masks(tmp_path: Path, kssd: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for n in ("a", "b"):
        shutil.copy2(kssd / "data/image/290.tif", tmp_path / "images" / f"{n}.tif")
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[5:9, 6:10] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "masks" / "a.png")
    bits = np.zeros((512, 512), bool)
    bits[20:30, 40:41] = True
    Image.fromarray(bits).save(tmp_path / "masks" / "b.png")  # PIL mode "1": True must count as foreground
    records, problems = _partition(masks.read(tmp_path / "images", masks=tmp_path / "masks"))
    assert [r.boxes for r in records] == [[Box(40.0, 20.0, 41.0, 30.0, "object")]]
    assert len(problems) == 1 and problems[0].file.endswith("a.png") and "colour" in problems[0].problem


def test_masks_flag_on_a_dicom_folder_means_dicom_sidecars(tmp_path: Path) -> None:
    (tmp_path / "slices").mkdir()
    (tmp_path / "slices" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "m").mkdir()
    assert detect_format(tmp_path / "slices", masks=tmp_path / "m") == "dicom"
    assert detect_format(tmp_path / "m", masks=tmp_path / "m") == "masks"


def test_bad_options_are_problems(kssd: Path) -> None:
    for bad in ({"connectivity": 6}, {"min_area": 0}, {"threshold": "high"}, {"mask_classes": "stone"}):
        records, problems = _partition(masks.read(kssd, **bad))
        assert records == [] and len(problems) == 1 and "option" in problems[0].problem
