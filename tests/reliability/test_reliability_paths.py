"""Path safety: ``../``, absolute paths and symlinks leaving the source root are refused and reported,
and the file outside the root is never even opened (an in-process audit hook records every ``open``).

Archives: ``prepare`` does not read ``.zip`` (or other archive) sources — it has no extractor, so a
zip-slip entry can never be written anywhere. A zip given as SOURCE must be refused with a clear
message naming it, whatever ``--format`` says, and nothing is written.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo_ft.prepare.api import prepare
from yolo_ft.records import InvalidDatasetError, YoloFtError

REPO = Path(__file__).resolve().parents[2]
_OPENED: list[str] = []
_WATCH: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0]) if not isinstance(args[0], int) else ""
        if any(path.startswith(w) for w in _WATCH):
            _OPENED.append(path)


sys.addaudithook(_audit)


def png(seed: int, size=(48, 32)) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def world(tmp_path: Path):
    """src/ (the source root, with one good image) and outside/ (canary image + label + mask) beside it."""
    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    (outside / "canary.png").write_bytes(png(666))
    (outside / "canary.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (outside / "canary.xml").write_text("<annotation><filename>canary.png</filename></annotation>")
    _OPENED.clear()
    _WATCH[:] = [str(outside)]
    yield src, outside
    _WATCH.clear()


def _escape_refs(outside: Path) -> list[str]:
    return ["../outside/canary.png", str(outside / "canary.png"), "sub/../../outside/canary.png",
            "..\\outside\\canary.png", "link.png"]


def _run(src: Path, tmp: Path, fmt: str, n_bad: int, **opts) -> None:
    """Strict: every escape is a named problem, nothing written; skip-invalid: only the good image."""
    out = tmp / "out"
    _OPENED.clear()  # the test's own setup wrote the canaries
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, out, format=fmt, **opts)
    escapes = [p for p in e.value.problems if any(w in p.problem for w in ("escape", "outside", "absolute", "symlink"))]
    assert len(escapes) >= n_bad, e.value.problems
    assert all(p.file and Path(p.file).is_relative_to(src) for p in e.value.problems), e.value.problems
    assert not out.exists()
    report = prepare(src, out, format=fmt, skip_invalid=True, **opts)
    written = [p for p in (out / "images").rglob("*") if p.is_file()]
    assert [p.name for p in written] == ["good.png"], written
    assert all(p.read_bytes() != png(666) for p in (out / "images").rglob("*") if p.is_file())
    assert "canary" not in json.dumps({k: v for k, v in report.items() if k not in ("problems", "skipped")})
    assert _OPENED == [], f"a file outside the source root was opened: {_OPENED}"


def test_coco_file_names(world, tmp_path: Path) -> None:
    src, outside = world
    (src / "good.png").write_bytes(png(1))
    os.symlink(outside / "canary.png", src / "link.png")
    refs = ["good.png", *_escape_refs(outside)]
    doc = {"images": [{"id": i + 1, "file_name": r, "width": 48, "height": 32} for i, r in enumerate(refs)],
           "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(len(refs))],
           "categories": [{"id": 1, "name": "stone"}]}
    (src / "train.json").write_text(json.dumps(doc))
    _run(src, tmp_path, "coco", n_bad=5)


def test_voc_filenames(world, tmp_path: Path) -> None:
    src, outside = world
    (src / "good.png").write_bytes(png(1))
    os.symlink(outside / "canary.png", src / "link.png")
    for i, r in enumerate(["good.png", *_escape_refs(outside)]):
        (src / f"a{i}.xml").write_text(
            f"<annotation><filename>{r}</filename><object><name>stone</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
            f"<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    os.symlink(outside / "canary.xml", src / "z_link.xml")  # an annotation file that is itself a link out
    _run(src, tmp_path, "voc", n_bad=5)


def test_labelme_image_paths(world, tmp_path: Path) -> None:
    src, outside = world
    (src / "good.png").write_bytes(png(1))
    os.symlink(outside / "canary.png", src / "link.png")
    for i, r in enumerate(["good.png", *_escape_refs(outside)]):
        (src / f"a{i}.json").write_text(json.dumps({
            "shapes": [{"label": "stone", "points": [[2, 2], [9, 9]], "shape_type": "rectangle"}],
            "imagePath": r, "imageData": None, "imageWidth": 48, "imageHeight": 32}))
    _run(src, tmp_path, "labelme", n_bad=5)


def test_cvat_image_names(world, tmp_path: Path) -> None:
    src, outside = world
    (src / "good.png").write_bytes(png(1))
    os.symlink(outside / "canary.png", src / "link.png")
    body = "".join(f'<image id="{i}" name="{r}" width="48" height="32"><box label="stone" xtl="1" ytl="1" xbr="8" '
                   f'ybr="8"/></image>' for i, r in enumerate(["good.png", *_escape_refs(outside)]))
    (src / "annotations.xml").write_text(
        f"<annotations><version>1.1</version><meta><task><labels><label><name>stone</name></label></labels></task>"
        f"</meta>{body}</annotations>")
    _run(src, tmp_path, "cvat", n_bad=5)


def test_yolo_yaml_lists_and_symlinks(world, tmp_path: Path) -> None:
    src, outside = world
    (outside / "images").mkdir()
    (outside / "labels").mkdir()
    (outside / "images" / "o.png").write_bytes(png(667))
    (outside / "labels" / "o.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (src / "images" / "train").mkdir(parents=True)
    (src / "labels" / "train").mkdir(parents=True)
    (src / "images" / "train" / "good.png").write_bytes(png(1))
    (src / "labels" / "train" / "good.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    os.symlink(outside / "canary.png", src / "images" / "train" / "link.png")
    os.symlink(outside / "canary.txt", src / "labels" / "train" / "link.txt")
    os.symlink(outside / "images", src / "images" / "train" / "linkdir")
    (src / "val.txt").write_text(f"../outside/canary.png\n{outside / 'canary.png'}\n./images/train/good.png\n")
    (src / "data.yaml").write_text(
        f"path: {outside}\ntrain: [images/train, ../outside/images, {outside / 'images'}]\nval: val.txt\n"
        "names: {0: stone}\n")
    _WATCH.append(str(outside / "images"))
    _run(src, tmp_path, "yolo", n_bad=3)


def test_masks_and_dicom_symlinks(world, tmp_path: Path) -> None:
    src, outside = world
    for d in ("images", "masks"):
        (src / d).mkdir()
    (src / "images" / "good.png").write_bytes(png(1))
    m = np.zeros((32, 48), np.uint8)
    m[5:10, 5:12] = 255
    Image.fromarray(m).save(src / "masks" / "good.png")
    Image.fromarray(m).save(outside / "canary_mask.png")
    os.symlink(outside / "canary.png", src / "images" / "link.png")
    os.symlink(outside / "canary_mask.png", src / "masks" / "link.png")
    _run(src, tmp_path, "masks", n_bad=1)

    dsrc = tmp_path / "dsrc"
    dsrc.mkdir()
    (dsrc / "good.png").write_bytes(png(1))
    (dsrc / "good.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    os.symlink(outside / "canary.png", dsrc / "link.png")
    os.symlink(outside / "canary.txt", dsrc / "link.txt")
    _run(dsrc, tmp_path / "d", "dicom", n_bad=1, names="stone")


def _zip(tmp_path: Path) -> Path:
    z = tmp_path / "upload" / "data.zip"
    z.parent.mkdir()
    (z.parent / "decoy.png").write_bytes(png(5))  # an image beside the zip must not be picked up instead
    (z.parent / "decoy.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("images/train/a.png", png(1))
        zf.writestr("labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n")
        zf.writestr("../../evil.txt", "zip slip")
        zf.writestr("/tmp/evil_abs.txt", "zip slip")
    return z


@pytest.mark.parametrize("fmt", [None, "yolo", "coco", "voc", "labelme", "cvat", "masks", "dicom"])
def test_zip_source_is_refused_clearly(fmt, tmp_path: Path) -> None:
    z = _zip(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(YoloFtError) as e:
        prepare(z, out, format=fmt)
    assert "data.zip" in str(e.value) or any("data.zip" in p.file for p in getattr(e.value, "problems", []))
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()
    assert sorted(p.name for p in z.parent.iterdir()) == ["data.zip", "decoy.png", "decoy.txt"]


def test_zip_source_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    z = _zip(tmp_path)
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "prepare", str(z), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "data.zip" in r.stderr + r.stdout


def test_output_inside_the_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images" / "train").mkdir(parents=True)
    (src / "labels" / "train").mkdir(parents=True)
    (src / "images" / "train" / "a.png").write_bytes(png(1))
    (src / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for out in (src / "out", src / "images" / "out", tmp_path):
        with pytest.raises(YoloFtError, match="outside the source"):
            prepare(src, out, overwrite=True)
    assert sorted(p.name for p in src.iterdir()) == ["images", "labels"]
