"""Property tests: whatever the annotation file holds, a reader yields Records or Problems, never raises.

A modest budget per reader keeps this fast in CI; a longer run is the same code with more examples
(``--hypothesis-seed``/settings profiles). Worst cases found while writing the readers are pinned
with ``@example``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from yolo_ft.prepare.readers import coco, cvat, dicom, labelme, masks, voc
from yolo_ft.records import Problem, Record

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)

LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["a.jpg", "../a.jpg", "/etc/passwd", "C:\\x.jpg", "a\x00.jpg", ""]),
    st.lists(st.integers(-5, 600), max_size=5), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _drain(reader, path: Path, **options) -> None:
    for item in reader.read(path, **options):
        assert isinstance(item, (Record, Problem))
        assert not isinstance(item, Problem) or (item.file and item.problem)
        if isinstance(item, Record) and item.render is not None:
            try:
                item.render()
            except ValueError:
                pass  # a render failure is reported by validation, per file


@pytest.fixture(scope="module")
def root(kidney_yolo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    shutil.copy2(next((kidney_yolo / "datasets/images/train").iterdir()), d / "a.jpg")
    return d


COCO_BASE = {"categories": [{"id": 1, "name": "s"}],
             "images": [{"id": 1, "file_name": "a.jpg", "width": 512, "height": 512}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0}]}
COCO_FIELDS = [("categories", "id"), ("categories", "name"), ("images", "id"), ("images", "file_name"),
               ("images", "width"), ("annotations", "id"), ("annotations", "image_id"),
               ("annotations", "category_id"), ("annotations", "bbox"), ("annotations", "iscrowd")]


@FUZZ
@given(muts=st.lists(st.tuples(st.sampled_from(COCO_FIELDS), LEAF), min_size=1, max_size=3), dup=st.booleans())
@example(muts=[(("annotations", "bbox"), [1, 2, 10**400, 4])], dup=False)
@example(muts=[(("annotations", "category_id"), [1])], dup=True)
def test_coco_never_raises(root: Path, muts, dup: bool) -> None:
    data = copy.deepcopy(COCO_BASE)
    if dup:
        data["annotations"].append(copy.deepcopy(data["annotations"][0]))
    for (section, key), value in muts:
        data[section][0][key] = value
    path = root / "c.json"
    path.write_text(json.dumps(data))
    _drain(coco, path, crowd="keep")


LM_BASE = {"version": "5.5.0", "flags": {}, "imagePath": "a.jpg", "imageData": None, "imageHeight": 512,
           "imageWidth": 512, "shapes": [{"label": "s", "points": [[1, 2], [3, 4]], "shape_type": "rectangle"}]}


@FUZZ
@given(muts=st.lists(st.tuples(st.sampled_from(["imagePath", "imageData", "imageHeight", "imageWidth", "shapes",
                                                "s.label", "s.points", "s.shape_type"]), LEAF), min_size=1, max_size=3))
@example(muts=[("imagePath", "missing.jpg"), ("imageData", "iVBORw0KGgo=")])
def test_labelme_never_raises(root: Path, muts) -> None:
    data = copy.deepcopy(LM_BASE)
    for key, value in muts:
        if key.startswith("s."):
            if isinstance(data["shapes"], list) and data["shapes"] and isinstance(data["shapes"][0], dict):
                data["shapes"][0][key[2:]] = value
        else:
            data[key] = value
    path = root / "l.json"
    path.write_text(json.dumps(data))
    _drain(labelme, path)


XML_TEXT = st.one_of(st.sampled_from(["a.jpg", "nan", "1e999", "-5", "12", "", "../a.jpg", "&amp;"]),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<&"),
                             max_size=6))
VOC_TAGS = ["filename", "size", "width", "height", "object", "name", "bndbox", "xmin", "ymin", "xmax", "ymax"]
CVAT_TAGS = ["image", "box", "polygon", "ellipse", "mask", "meta", "label", "name"]
CVAT_ATTRS = ["name", "label", "xtl", "ytl", "xbr", "ybr", "points", "cx", "cy", "rx", "ry", "left", "top",
              "width", "height", "subset"]


def _nodes(tags, attrs, depth: int = 0):
    kids = st.lists(st.deferred(lambda: _nodes(tags, attrs, depth + 1)), max_size=3) if depth < 3 else st.just([])
    attr = st.dictionaries(st.sampled_from(attrs), XML_TEXT.map(lambda s: s.replace('"', "")), max_size=5)
    return st.builds(
        lambda t, a, text, k: f"<{t} " + " ".join(f'{n}="{v}"' for n, v in a.items()) + f">{text}{''.join(k)}</{t}>",
        st.sampled_from(tags), attr if attrs else st.just({}), XML_TEXT, kids,
    )


@FUZZ
@given(body=_nodes(VOC_TAGS, []), wrap=st.booleans())
@example(body='<filename>a.jpg</filename><object><name>x</name><bndbox><xmin>1e999</xmin></bndbox></object>',
         wrap=True)
def test_voc_never_raises(root: Path, body: str, wrap: bool) -> None:
    path = root / "v.xml"
    path.write_text(f"<annotation>{body}</annotation>" if wrap else body, encoding="utf-8")
    _drain(voc, path)


@FUZZ
@given(body=st.lists(_nodes(CVAT_TAGS, CVAT_ATTRS), max_size=3))
def test_cvat_never_raises(root: Path, body: list[str]) -> None:
    path = root / "annotations.xml"
    path.write_text("<annotations><version>1.1</version>" + "".join(body) + "</annotations>", encoding="utf-8")
    _drain(cvat, path)


@FUZZ
@given(data=st.binary(max_size=300), cut=st.integers(0, 600), splice=st.booleans())
def test_dicom_and_mask_bytes_never_raise(
    root: Path, shared_datasets: Path, data: bytes, cut: int, splice: bool
) -> None:
    kssd = shared_datasets / "kssd2025-kidney-stone-masks" / "data"
    (root / "dcm").mkdir(exist_ok=True)
    head = (b"\0" * 128 + b"DICM\x02\x00\x00\x00UL\x04\x00") if splice else b""
    (root / "dcm" / "x.dcm").write_bytes(head + data[:cut])
    _drain(dicom, root / "dcm")
    (root / "img").mkdir(exist_ok=True)
    (root / "msk").mkdir(exist_ok=True)
    if not (root / "img" / "m.tif").exists():
        shutil.copy2(kssd / "image" / "290.tif", root / "img" / "m.tif")
    (root / "msk" / "m.tif").write_bytes((kssd / "label" / "290.tif").read_bytes()[:cut] + data)
    _drain(masks, root, images=root / "img", masks=root / "msk")
