"""Corrupt and unusual image files through ``prepare``: handled correctly, or reported with file + reason.

Convention for EXIF orientation (decided with the prepare code): annotations are in the frame the
annotation tool *displayed*, i.e. after EXIF orientation, which is also what Ultralytics trains on
(``cv2.imread`` applies the EXIF rotation and its ``exif_size`` reports the rotated size). So a label
drawn on the displayed photo must come out unchanged, and it must cover the same pixels in the image
Ultralytics loads. An annotation that states the *stored* (unrotated) size is a reported mismatch.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from yolo_ft.prepare.api import prepare
from yolo_ft.records import InvalidDatasetError

REPO = Path(__file__).resolve().parents[2]


def real_jpegs(kidney: Path, n: int) -> list[Path]:
    d = kidney / "datasets" / "images" / "train"
    return sorted(p for p in d.iterdir() if p.name.startswith("STONE"))[:n]


def yolo_source(root: Path, images: dict[str, bytes], labels: dict[str, str], names=("stone",)) -> Path:
    """images/train/<name> + labels/train/<stem>.txt + classes.txt."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for name, data in images.items():
        (root / "images" / "train" / name).write_bytes(data)
    for stem, text in labels.items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text, encoding="utf-8")
    (root / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def out_label(out: Path, stem: str) -> list[list[float]]:
    split = next(s for s in ("train", "val", "test") if (out / "labels" / s / f"{stem}.txt").exists())
    text = (out / "labels" / split / f"{stem}.txt").read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


def test_zero_byte_and_truncated_images_are_named_and_nothing_is_written(kidney_yolo: Path, tmp_path: Path) -> None:
    good = real_jpegs(kidney_yolo, 3)
    jpeg = good[2].read_bytes()
    png = encode(Image.open(good[1]).convert("L"), "PNG")
    images = {good[0].name: good[0].read_bytes(), "empty.jpg": b"", "cut.jpg": jpeg[: len(jpeg) * 6 // 10],
              "cut.png": png[: len(png) // 2], "header_only.jpg": jpeg[:200], "text.png": b"not an image at all"}
    labels = {Path(n).stem: "0 0.5 0.5 0.1 0.1\n" for n in images}
    src = yolo_source(tmp_path / "src", images, labels)
    out = tmp_path / "out"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, out)
    by_file = {Path(p.file).name: p.problem for p in e.value.problems}
    assert "0 bytes" in by_file["empty.jpg"]
    assert "truncated" in by_file["cut.jpg"] or "corrupt" in by_file["cut.jpg"]
    assert "truncated" in by_file["cut.png"]
    assert "corrupt" in by_file["header_only.jpg"] or "truncated" in by_file["header_only.jpg"]
    assert "not a readable image" in by_file["text.png"]
    assert good[0].name not in by_file
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]

    report = prepare(src, out, skip_invalid=True)
    assert report["images"]["train"] == 1 and sorted(os.listdir(out / "images" / "train")) == [good[0].name]
    assert {Path(s).name for s in report["skipped"]} == {"empty.jpg", "cut.jpg", "cut.png", "header_only.jpg", "text.png"}


def test_truncated_jpeg_is_refused_even_after_ultralytics_is_imported(kidney_yolo: Path, tmp_path: Path) -> None:
    """Ultralytics patches PIL/cv2 on import; validation must still see a truncated JPEG as broken."""
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    import ultralytics.data.utils  # noqa: F401 - its import-time patches are what we test against

    jpeg = real_jpegs(kidney_yolo, 1)[0].read_bytes()
    src = yolo_source(tmp_path / "src", {"cut.jpg": jpeg[: len(jpeg) // 2]}, {"cut": "0 0.5 0.5 0.1 0.1\n"})
    with pytest.raises(InvalidDatasetError, match="cut.jpg"):
        prepare(src, tmp_path / "out")


def test_cmyk_grey_tiff_palette_and_16bit_png_are_kept_byte_identical(kidney_yolo: Path, tmp_path: Path) -> None:
    base = Image.open(real_jpegs(kidney_yolo, 1)[0]).convert("RGB").resize((160, 120))
    grey16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    images = {
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG", quality=95),
        "grey.tif": encode(base.convert("L").rotate(90, expand=True), "TIFF"),
        "palette.png": encode(base.transpose(Image.FLIP_LEFT_RIGHT).convert("P", palette=Image.ADAPTIVE), "PNG"),
        "deep16.png": encode(grey16.transpose(Image.FLIP_TOP_BOTTOM), "PNG"),
    }
    assert Image.open(io.BytesIO(images["cmyk.jpg"])).mode == "CMYK"
    assert Image.open(io.BytesIO(images["deep16.png"])).mode.startswith("I")
    labels = {Path(n).stem: f"0 0.4 0.5 0.2 0.{i + 2}\n" for i, n in enumerate(images)}
    src = yolo_source(tmp_path / "src", images, labels)
    out = tmp_path / "out"
    report = prepare(src, out)
    assert report["problems"] == [] and report["images"]["train"] == 4
    for name, data in images.items():
        dst = out / "images" / "train" / name
        assert dst.read_bytes() == data  # linked or copied, never re-encoded
        arr = cv2.imread(str(dst))  # what Ultralytics does
        assert arr is not None and arr.ndim == 3
        w, h = Image.open(dst).size
        assert arr.shape[:2] == (h, w)
        assert out_label(out, Path(name).stem) == [[0, 0.4, 0.5, 0.2, float(f"0.{list(images).index(name) + 2}")]]


def _exif_jpeg(displayed: Image.Image, orientation: int) -> bytes:
    """Store ``displayed`` so that a viewer applying EXIF ``orientation`` shows it as ``displayed``."""
    inverse = {6: Image.ROTATE_90, 8: Image.ROTATE_270, 3: Image.ROTATE_180}[orientation]
    stored = displayed.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=98, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_rotated_photo_keeps_the_displayed_frame_labels(orientation: int, tmp_path: Path) -> None:
    # Displayed frame 80x120 (portrait) with a bright box at x 10..30, y 70..100.
    disp = np.zeros((120, 80, 3), np.uint8)
    disp[70:100, 10:30] = 255
    data = _exif_jpeg(Image.fromarray(disp), orientation)
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[0x0112] == orientation
        assert (im.size == (120, 80)) == (orientation in (6, 8))
    cx, cy, w, h = 20 / 80, 85 / 120, 20 / 80, 30 / 120
    src = yolo_source(tmp_path / "src", {"photo.jpg": data}, {"photo": f"0 {cx} {cy} {w} {h}\n"})
    out = tmp_path / "out"
    report = prepare(src, out)
    assert report["problems"] == []
    (c, ocx, ocy, ow, oh), = out_label(out, "photo")
    assert (ocx, ocy, ow, oh) == pytest.approx((cx, cy, w, h), abs=1e-6)
    # The pixels Ultralytics loads (cv2 applies EXIF) show the object inside the label box.
    arr = cv2.imread(str(out / "images" / "train" / "photo.jpg"), cv2.IMREAD_GRAYSCALE)
    assert arr.shape == (120, 80)
    x1, y1, x2, y2 = (round(v) for v in ((ocx - ow / 2) * 80, (ocy - oh / 2) * 120, (ocx + ow / 2) * 80, (ocy + oh / 2) * 120))
    inside = arr[y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean()
    outside = np.concatenate([arr[:, : x1 - 3].ravel(), arr[:, x2 + 3:].ravel(), arr[: y1 - 3].ravel()]).mean()
    assert inside > 200 and outside < 30


def test_exif_rotated_photo_in_coco_and_voc(tmp_path: Path) -> None:
    """COCO/VOC state the size: the displayed size is accepted, the stored (unrotated) size is a named problem."""
    disp = np.zeros((120, 80, 3), np.uint8)
    disp[70:100, 10:30] = 255
    data = _exif_jpeg(Image.fromarray(disp), 6)
    for size, ok in (((80, 120), True), ((120, 80), False)):
        src = tmp_path / f"coco{size[0]}"
        src.mkdir()
        (src / "photo.jpg").write_bytes(data)
        (src / "train.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "photo.jpg", "width": size[0], "height": size[1]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 70, 20, 30], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "stone"}]}))
        out = tmp_path / f"out{size[0]}"
        if ok:
            prepare(src, out)
            assert out_label(out, "photo") == [[0, 0.25, pytest.approx(85 / 120, abs=1e-6), 0.25, 0.25]]
        else:
            with pytest.raises(InvalidDatasetError) as e:
                prepare(src, out)
            assert [(Path(p.file).name, "80x120" in p.problem and "120x80" in p.problem) for p in e.value.problems] \
                == [("train.json", True)]
            assert not out.exists()
    src = tmp_path / "voc"
    src.mkdir()
    (src / "photo.jpg").write_bytes(data)
    (src / "photo.xml").write_text(
        "<annotation><filename>photo.jpg</filename><size><width>80</width><height>120</height><depth>3</depth></size>"
        "<object><name>stone</name><bndbox><xmin>10</xmin><ymin>70</ymin><xmax>30</xmax><ymax>100</ymax></bndbox>"
        "</object></annotation>")
    prepare(src, tmp_path / "out_voc", one_based=False)
    assert out_label(tmp_path / "out_voc", "photo") == [[0, 0.25, pytest.approx(85 / 120, abs=1e-6), 0.25, 0.25]]


HUGE_CHILD = r"""
import json, resource, sys
import numpy as np
from PIL import Image
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
(src / "images" / "train").mkdir(parents=True)
(src / "labels" / "train").mkdir(parents=True)
a = np.zeros((12000, 12000), np.uint8)
a[6000:6600, 3000:3900] = 255
Image.fromarray(a).save(src / "images" / "train" / "huge.png", compress_level=1)
bomb = np.zeros((20000, 20000), np.uint8)  # 400 Mpx: past PIL's decompression-bomb limit
Image.fromarray(bomb).save(src / "images" / "train" / "bomb.png", compress_level=1)
del a, bomb
(src / "labels" / "train" / "huge.txt").write_text("0 0.2875 0.525 0.075 0.05\n")
(src / "labels" / "train" / "bomb.txt").write_text("0 0.5 0.5 0.1 0.1\n")
(src / "classes.txt").write_text("stone\n")
"""

PREPARE_CHILD = r"""
import json, resource, sys
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
import yolo_ft.prepare.api as api, yolo_ft.prepare.validate, cv2, numpy, PIL.Image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = api.prepare(src, out, skip_invalid=True)
print(json.dumps({"report": r, "sizes": {p.name: p.stat().st_size for p in (src / "images" / "train").iterdir()},
                  "base_kb": base, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_huge_sparse_image_is_handled_and_a_decompression_bomb_is_reported(tmp_path: Path) -> None:
    """12000x12000 (small on disk) is a valid image; 20000x20000 is past PIL's bomb limit and is reported."""
    for code in (HUGE_CHILD, PREPARE_CHILD):  # separate processes: the peak RSS is prepare's alone
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "src"), str(tmp_path / "out")],
                           capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["sizes"]["huge.png"] < 2_000_000 and res["sizes"]["bomb.png"] < 2_000_000
    rep = res["report"]
    assert rep["images"]["train"] == 1
    assert out_label(tmp_path / "out", "huge") == [[0, 0.2875, 0.525, 0.075, 0.05]]
    (bomb,) = rep["problems"]
    assert bomb["file"].endswith("bomb.png") and "too large" in bomb["problem"]
    # One 144 Mpx greyscale decode is 144 MB; the check must not hold several full-size copies of it.
    growth_mb = (res["peak_kb"] - res["base_kb"]) / 1024
    assert growth_mb < 500, f"validating one 12000x12000 image grew RSS by {growth_mb:.0f} MB"


def test_names_with_spaces_non_ascii_and_non_utf8(kidney_yolo: Path, tmp_path: Path) -> None:
    jpgs = real_jpegs(kidney_yolo, 4)
    images = {"rénal ü.jpg": jpgs[0].read_bytes(), "腎臓_结石.jpg": jpgs[1].read_bytes(),
              "Nieren-Stein_ä.jpg": jpgs[2].read_bytes()}
    labels = {Path(n).stem: "0 0.5 0.5 0.1 0.1\n" for n in images}
    src = yolo_source(tmp_path / "src", images, labels)
    bad = os.fsencode(src / "images" / "train") + b"/latin1_\xe9.jpg"  # a name that is not UTF-8
    with open(bad, "wb") as f:
        f.write(jpgs[3].read_bytes())
    with open(os.fsencode(src / "labels" / "train") + b"/latin1_\xe9.txt", "wb") as f:
        f.write(b"0 0.5 0.5 0.1 0.1\n")
    out = tmp_path / "out"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, out)
    probs = {p.file.rsplit("/", 1)[-1]: p.problem for p in e.value.problems}
    assert set(probs) == {"rénal ü.jpg", "latin1_\\udce9.jpg"}, probs
    assert "whitespace" in probs["rénal ü.jpg"] and "UTF-8" in probs["latin1_\\udce9.jpg"]
    str(e.value).encode("utf-8")  # the message itself prints on a UTF-8 terminal

    # The CLI prints every problem without a traceback (exit 2) and writes nothing.
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "prepare", str(src), "--out", str(out)],
                       capture_output=True, cwd=REPO, timeout=120, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert b"Traceback" not in r.stderr + r.stdout and "rénal ü.jpg".encode() in r.stdout + r.stderr
    assert not out.exists()

    report = prepare(src, out, skip_invalid=True)
    assert sorted(os.listdir(out / "images" / "train")) == sorted(["腎臓_结石.jpg", "Nieren-Stein_ä.jpg"])
    assert sorted(os.listdir(out / "labels" / "train")) == sorted(["腎臓_结石.txt", "Nieren-Stein_ä.txt"])
    json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["images"]["train"] == 2 and len(report["skipped"]) == 2


@pytest.mark.parametrize("orientation", [3, 6])
def test_tiff_with_exif_rotation_is_reported_because_opencv_cannot_apply_it(orientation: int, tmp_path: Path) -> None:
    """OpenCV (Ultralytics' loader) ignores a TIFF's orientation 2-4 and cannot read 5-8 at all, while PIL applies
    it: labels in the displayed frame would not match the pixels trained on. Reported, not written."""
    im = Image.fromarray(np.zeros((40, 60), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(im, "TIFF", exif=exif.tobytes())
    path = tmp_path / "probe.tif"
    path.write_bytes(data)
    loaded = cv2.imread(str(path))
    assert loaded is None or loaded.shape[:2] == (40, 60)  # what Ultralytics would train on: never the rotated frame
    src = yolo_source(tmp_path / "src", {"scan.tif": data, "ok.png": encode(Image.fromarray(np.full((8, 8), 9, np.uint8)), "PNG")},
                      {"scan": "0 0.5 0.5 0.2 0.2\n", "ok": ""})
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, tmp_path / "out")
    (p,) = e.value.problems
    assert p.file.endswith("scan.tif") and "orientation" in p.problem
