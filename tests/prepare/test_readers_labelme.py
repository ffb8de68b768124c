"""LabelMe reader on JSON written exactly as LabelMe 5.x writes it, over real images."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_ft.prepare.readers import detect_format, labelme
from yolo_ft.records import Box, Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


def _shape(label: str, points: list, shape_type: str) -> dict:
    # Field order and defaults as LabelMe 5.x's LabelFile.save() writes them.
    return {"label": label, "points": points, "group_id": None, "description": "", "shape_type": shape_type,
            "flags": {}, "mask": None}


def _labelme(image_path: str, shapes: list, image: Path | None, h: int = 512, w: int = 512) -> dict:
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image.read_bytes()).decode() if image is not None else None,
        "imageHeight": h,
        "imageWidth": w,
    }


@pytest.fixture()
def real_images(kidney_yolo: Path) -> list[Path]:
    src = kidney_yolo / "datasets/images/train"
    return sorted(p for p in src.iterdir() if p.name.startswith("STONE"))[:3]


def test_labelme_shapes_embedded_image_and_negatives(real_images: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "lm"
    root.mkdir()
    shutil.copy2(real_images[0], root / "scan 1.jpg")
    shutil.copy2(real_images[2], root / "unlabelled.jpg")
    shapes = [
        _shape("KIDNEY_STONE", [[220.5, 140.25], [200.0, 120.0]], "rectangle"),  # corners in drag order
        _shape("kidney", [[100, 200], [150.5, 180], [160, 260.25], [90, 230]], "polygon"),
        _shape("cyst", [[300, 300], [303, 304]], "circle"),  # centre + rim point: radius 5
    ]
    (root / "scan 1.json").write_text(json.dumps(_labelme("scan 1.jpg", shapes, root / "scan 1.jpg"), indent=2))
    # Image file missing, but embedded: the record renders the exact embedded bytes.
    (root / "embedded.json").write_text(json.dumps(_labelme("C:\\Users\\bob\\scan 2.jpg",
                                                            [_shape("KIDNEY_STONE", [[1, 2], [3, 4]], "rectangle")],
                                                            real_images[1])))
    (root / "negative.json").write_text(json.dumps(_labelme("scan 1.jpg", [], None)))
    (root / "config.json").write_text(json.dumps({"theme": "dark"}))  # not LabelMe: ignored in a folder
    assert detect_format(root) == "labelme"
    records, problems = _partition(labelme.read(root))
    assert problems == []
    by = {r.source.name if r.source else r.image.name: r for r in records}
    assert set(by) == {"scan 1.json", "embedded.json", "negative.json", "unlabelled.jpg"}
    s1 = by["scan 1.json"]
    assert s1.image == (root / "scan 1.jpg").resolve() and s1.render is None and (s1.width, s1.height) == (512, 512)
    assert s1.boxes == [
        Box(200.0, 120.0, 220.5, 140.25, "KIDNEY_STONE"),
        Box(90.0, 180.0, 160.0, 260.25, "kidney"),
        Box(295.0, 295.0, 305.0, 305.0, "cyst"),
    ]
    emb = by["embedded.json"]
    assert emb.render is not None and emb.render_suffix == ".jpg" and emb.image.name == "scan 2.jpg"
    data = emb.render()
    assert data == real_images[1].read_bytes()  # byte-identical: never re-encoded
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (512, 512)
    assert by["negative.json"].annotated and by["negative.json"].boxes == []
    assert by["unlabelled.jpg"].annotated is False


def test_dotdot_image_path_needs_images_option(real_images: list[Path], tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "ann").mkdir()
    shutil.copy2(real_images[0], tmp_path / "images" / "a.jpg")
    jf = tmp_path / "ann" / "a.json"
    jf.write_text(json.dumps(_labelme("../images/a.jpg", [_shape("s", [[1, 1], [5, 5]], "rectangle")], None)))
    records, problems = _partition(labelme.read(tmp_path / "ann"))
    assert records == [] and problems[0].file == str(jf) and "'..'" in problems[0].problem
    records, problems = _partition(labelme.read(tmp_path / "ann", images=tmp_path / "images"))
    assert problems == [] and records[0].image == (tmp_path / "images" / "a.jpg").resolve()
    assert records[0].boxes == [Box(1, 1, 5, 5, "s")]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(shapes="nope"), "'shapes' must be a list"),
        (lambda d: d["shapes"][0].pop("label"), "no label"),
        (lambda d: d["shapes"][0].update(points=[[1, 2, 3]]), "points must be"),
        (lambda d: d["shapes"][0].update(points=[[float("nan"), 2], [3, 4]]), "not finite"),
        (lambda d: d["shapes"][0].update(points=[[1, 2], [3, 4], [5, 6]]), "rectangle needs 2 points"),
        (lambda d: d.update(imagePath="/etc/passwd"), "absolute"),
        (lambda d: d.update(imagePath="missing.jpg"), "not found"),
        (lambda d: d.update(imagePath="missing.jpg", imageData="!!notbase64!!"), "not valid base64"),
        (lambda d: d.update(imagePath="missing.jpg", imageData=base64.b64encode(b"GIF89a....").decode()),
         "not a PNG"),
        (lambda d: d.update(imageWidth="wide"), "not a number"),
        (lambda d: d.update(imagePath=None), "no 'imagePath'"),
    ],
)
def test_bad_labelme_is_a_problem_naming_the_file(real_images: list[Path], tmp_path: Path, mutate, fragment) -> None:
    shutil.copy2(real_images[0], tmp_path / "a.jpg")
    data = _labelme("a.jpg", [_shape("s", [[1, 1], [5, 5]], "rectangle")], None)
    mutate(data)
    jf = tmp_path / "a.json"
    jf.write_text(json.dumps(data))
    records, problems = _partition(labelme.read(jf))
    assert records == []
    assert len(problems) == 1 and problems[0].file == str(jf) and fragment in problems[0].problem


@pytest.mark.parametrize("text", ["{", "[]", '{"shapes": [], "imagePath": ' + "[" * 50_000 + "]" * 50_000 + "}"])
def test_malformed_json(tmp_path: Path, text: str) -> None:
    jf = tmp_path / "a.json"
    jf.write_text(text)
    records, problems = _partition(labelme.read(jf))
    assert records == [] and len(problems) == 1 and problems[0].file == str(jf)
