"""Readers against files written by a real third-party writer: FiftyOne's own dataset exporters.

One FiftyOne dataset (real CT images, known pixel boxes, a negative, two image sizes, a label
with a space) is exported as COCO, CVAT for images and Pascal VOC; our readers must give back the
same images, class names and pixel boxes within 1 px (the exporters round or truncate to ints).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from yolo_ft.prepare.readers import coco, cvat, detect_format, voc
from yolo_ft.records import Problem, Record

# image index → [(label, x, y, w, h) in pixels]; index 0 is a negative.
KNOWN = {
    0: [],
    1: [("KIDNEY_STONE", 100.4, 200.6, 20.3, 15.7), ("left kidney", 50.0, 60.0, 150.0, 210.5)],
    2: [("KIDNEY_STONE", 300.2, 310.9, 6.6, 5.2)],
    3: [("KIDNEY_STONE", 10.0, 20.0, 30.0, 40.0), ("KIDNEY_STONE", 400.5, 100.5, 12.0, 9.0),
        ("left kidney", 200.0, 150.0, 120.0, 180.0)],
}


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


@pytest.fixture(scope="module")
def exported(kidney_yolo: Path, tmp_path_factory: pytest.TempPathFactory):
    import fiftyone as fo

    src = kidney_yolo / "datasets/images/train"
    normals = sorted(p for p in src.iterdir() if p.name.startswith("Normal"))
    stones = sorted(p for p in src.iterdir() if p.name.startswith("STONE"))
    # A 745x602 image (Normal---126) among 512x512 ones, so width/height mix-ups would show.
    images = [normals[0], next(p for p in normals if Image.open(p).size != (512, 512)), stones[0], stones[1]]
    truth: dict[str, list] = {}
    ds = fo.Dataset()
    try:
        for i, path in enumerate(images):
            w, h = Image.open(path).size
            dets = [fo.Detection(label=lab, bounding_box=[x / w, y / h, bw / w, bh / h])
                    for lab, x, y, bw, bh in KNOWN[i]]
            ds.add_sample(fo.Sample(filepath=str(path), ground_truth=fo.Detections(detections=dets)))
            truth[path.name] = sorted((lab, x, y, x + bw, y + bh) for lab, x, y, bw, bh in KNOWN[i])
        ds.compute_metadata()
        out = tmp_path_factory.mktemp("fiftyone_exports")
        for name, kind in (("coco", fo.types.COCODetectionDataset), ("cvat", fo.types.CVATImageDataset),
                           ("voc", fo.types.VOCDetectionDataset)):
            ds.export(export_dir=str(out / name), dataset_type=kind, label_field="ground_truth")
        # Two views into one folder: train.json / val.json sharing data/ (split from the file name).
        ids = ds.values("id")
        for split, view in (("train", ds.select(ids[:3])), ("val", ds.select(ids[3:]))):
            view.export(dataset_type=fo.types.COCODetectionDataset, label_field="ground_truth",
                        data_path=str(out / "coco_splits" / "data"),
                        labels_path=str(out / "coco_splits" / f"{split}.json"))
    finally:
        ds.delete()
    return out, truth, [p.name for p in images]


def _assert_matches(records: list[Record], truth: dict, tol: float = 1.0) -> None:
    assert sorted(r.image.name for r in records) == sorted(truth)
    for rec in records:
        assert rec.annotated
        expected = truth[rec.image.name]
        got = sorted((b.label, b.x1, b.y1, b.x2, b.y2) for b in rec.boxes)
        assert [g[0] for g in got] == [e[0] for e in expected], rec.image.name
        for g, e in zip(got, expected):
            assert max(abs(a - b) for a, b in zip(g[1:], e[1:])) <= tol, (rec.image.name, g, e)
        w, h = Image.open(rec.image).size
        assert (rec.width, rec.height) == (w, h)


def test_fiftyone_coco(exported) -> None:
    out, truth, _ = exported
    assert detect_format(out / "coco") == "coco"
    records, problems = _partition(coco.read(out / "coco"))
    assert problems == []
    assert all(r.image.parent.name == "data" and r.split is None for r in records)  # FiftyOne's data/ sibling
    _assert_matches(records, truth, tol=1e-6)  # COCO keeps float pixels: exact
    assert coco.class_names(out / "coco") == ["KIDNEY_STONE", "left kidney"]


def test_fiftyone_coco_split_files(exported) -> None:
    out, truth, names = exported
    records, problems = _partition(coco.read(out / "coco_splits"))
    assert problems == []
    assert {r.image.name: r.split for r in records} == {**{n: "train" for n in names[:3]}, names[3]: "val"}
    _assert_matches(records, truth, tol=1e-6)


def test_fiftyone_cvat(exported) -> None:
    out, truth, _ = exported
    assert detect_format(out / "cvat") == "cvat"
    records, problems = _partition(cvat.read(out / "cvat"))
    assert problems == []
    _assert_matches(records, truth)
    assert cvat.class_names(out / "cvat") == ["KIDNEY_STONE", "left kidney"]


def test_fiftyone_voc(exported) -> None:
    out, truth, _ = exported
    assert detect_format(out / "voc") == "voc"
    # FiftyOne writes 0-based pixel numbers: read them as they are.
    records, problems = _partition(voc.read(out / "voc", one_based=False))
    assert problems == []
    _assert_matches(records, truth)
    # The default (1-based VOC, as the devkit and Ultralytics) is exactly one pixel up-left of that.
    default, _ = _partition(voc.read(out / "voc"))
    shifted = {r.image.name: [(b.x1 + 1, b.y1 + 1, b.x2 + 1, b.y2 + 1) for b in r.boxes] for r in default}
    assert shifted == {r.image.name: [(b.x1, b.y1, b.x2, b.y2) for b in r.boxes] for r in records}
