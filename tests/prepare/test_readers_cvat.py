"""CVAT for images 1.1 reader on CVAT-style XML over real images: shapes, subsets, negatives, bad input.

FiftyOne-written CVAT XML is covered in test_readers_fiftyone.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from yolo_ft.prepare.readers import cvat, detect_format
from yolo_ft.records import Box, Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


META = """<version>1.1</version><meta><project><name>p</name><labels>
  <label><name>stone</name><color>#ff0000</color>
    <attributes><attribute><name>size</name></attribute></attributes></label>
  <label><name>kidney left</name></label></labels></project></meta>"""


def _doc(images: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<annotations>{META}{images}</annotations>'


@pytest.fixture()
def cvat_dir(kidney_yolo: Path, tmp_path: Path) -> Path:
    src = kidney_yolo / "datasets/images/train"
    names = sorted(p.name for p in src.iterdir())[:4]
    root = tmp_path / "cvat"
    (root / "images" / "sub").mkdir(parents=True)
    shutil.copy2(src / names[0], root / "images" / "a.jpg")
    shutil.copy2(src / names[1], root / "images" / "sub" / "b c.jpg")
    shutil.copy2(src / names[2], root / "images" / "neg.jpg")
    shutil.copy2(src / names[3], root / "images" / "unlisted.jpg")
    (root / "annotations.xml").write_text(_doc("""
  <image id="0" name="a.jpg" width="512" height="512" subset="Train">
    <box label="stone" source="manual" occluded="0" xtl="10.5" ytl="20.25" xbr="30.75" ybr="40" z_order="0">
      <attribute name="size">big</attribute></box>
    <polygon label="kidney left" occluded="0" points="100.00,200.00;150.50,180.00;160.00,260.25;90.00,230.00"/>
    <ellipse label="stone" cx="300" cy="310" rx="5" ry="7.5"/>
    <points label="stone" points="1,1"/>
    <tag label="stone"/>
  </image>
  <image id="1" name="sub/b c.jpg" width="512" height="512" subset="Validation">
    <mask label="stone" rle="1, 2" left="40" top="50" width="3" height="2"/>
  </image>
  <image id="2" name="neg.jpg" width="512" height="512"/>
"""), encoding="utf-8")
    return root


def test_shapes_subsets_negatives_and_unlisted(cvat_dir: Path) -> None:
    assert detect_format(cvat_dir) == "cvat"
    records, problems = _partition(cvat.read(cvat_dir))
    assert problems == []
    by = {r.image.relative_to(cvat_dir.resolve() / "images").as_posix(): r for r in records}
    assert set(by) == {"a.jpg", "sub/b c.jpg", "neg.jpg", "unlisted.jpg"}
    a = by["a.jpg"]
    assert a.split == "train" and (a.width, a.height) == (512, 512) and a.annotated
    assert a.boxes == [
        Box(10.5, 20.25, 30.75, 40.0, "stone"),
        Box(90.0, 180.0, 160.0, 260.25, "kidney left"),
        Box(295.0, 302.5, 305.0, 317.5, "stone"),
    ]
    assert by["sub/b c.jpg"].split == "val" and by["sub/b c.jpg"].boxes == [Box(40, 50, 43, 52, "stone")]
    assert by["neg.jpg"].annotated and by["neg.jpg"].boxes == [] and by["neg.jpg"].split is None
    assert by["unlisted.jpg"].annotated is False
    assert cvat.class_names(cvat_dir) == ["stone", "kidney left"]


BAD = {
    "undeclared": ('<image id="0" name="a.jpg"><box label="cyst" xtl="1" ytl="1" xbr="2" ybr="2"/></image>',
                   "not declared"),
    "nan": ('<image id="0" name="a.jpg"><box label="stone" xtl="nan" ytl="1" xbr="2" ybr="2"/></image>', "not finite"),
    "missing": ('<image id="0" name="a.jpg"><box label="stone" ytl="1" xbr="2" ybr="2"/></image>', "not a number"),
    "inverted": ('<image id="0" name="a.jpg"><box label="stone" xtl="5" ytl="1" xbr="2" ybr="2"/></image>',
                 "bottom-right"),
    "points": ('<image id="0" name="a.jpg"><polygon label="stone" points="1;2;3"/></image>', "points must be"),
    "dotdot": ('<image id="0" name="../outside.jpg"/>', "'..'"),
    "absolute": ('<image id="0" name="/etc/hostname"/>', "absolute"),
    "noname": ('<image id="0"/>', "no name"),
    "size": ('<image id="0" name="a.jpg" width="wide" height="1"/>', "not a number"),
    "unlisted_file": ('<image id="0" name="nope.jpg"/>', "not found"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shapes_are_problems_naming_the_file(cvat_dir: Path, tmp_path: Path, case: str) -> None:
    shutil.copy2(cvat_dir / "images" / "a.jpg", tmp_path / "outside.jpg")
    body, fragment = BAD[case]
    xml = cvat_dir / "annotations.xml"
    xml.write_text(_doc(body), encoding="utf-8")
    records, problems = _partition(cvat.read(xml))
    assert [r for r in records if r.annotated] == []
    assert len(problems) == 1 and problems[0].file == str(xml)
    assert fragment in problems[0].problem and "<image id='0'" in problems[0].problem


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<annotations><image id='0' name='a.jpg'>", "invalid XML"),
        ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;">]>'
         '<annotations><version>1.1</version><image id="0" name="&y;"/></annotations>', "entities"),
        ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
         '<annotations><version>1.1</version><image id="0" name="&ext;"/></annotations>', "refused"),
    ],
)
def test_malformed_and_hostile_xml(tmp_path: Path, text: str, fragment: str) -> None:
    xml = tmp_path / "annotations.xml"
    xml.write_text(text, encoding="utf-8")
    records, problems = _partition(cvat.read(tmp_path))
    assert records == []
    assert len(problems) == 1 and problems[0].file == str(xml) and fragment in problems[0].problem
