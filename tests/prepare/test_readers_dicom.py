"""DICOM / 16-bit CT reader on real CT pixels written as CT Image Storage files by pydicom."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from yolo_ft.prepare.readers import detect_format, dicom, masks
from yolo_ft.records import Problem, Record


def _partition(items) -> tuple[list[Record], list[Problem]]:
    items = list(items)
    assert all(isinstance(i, (Record, Problem)) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Problem)]


def write_ct(path: Path, stored: np.ndarray, *, patient: str, study: str, window: tuple | None = (40, 400),
             slope: float = 1.0, intercept: float = -1024.0, photometric: str = "MONOCHROME2") -> None:
    """A minimal but conformant CT Image Storage file (file meta, 16-bit unsigned pixels, rescale)."""
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.PatientID, ds.PatientName = patient, f"Test^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _expected(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip(np.rint((hu - (center - width / 2)) / width * 255), 0, 255).astype(np.uint8)


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def ct(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 slices from 2 patients built from real KSSD CT pixels (stored = grey*8, HU = stored - 1024)."""
    kssd = shared_datasets / "kssd2025-kidney-stone-masks" / "data"
    root = tmp_path_factory.mktemp("dicom")
    (root / "slices").mkdir()
    (root / "masks").mkdir()
    stored = {}
    for name, patient in (("290", "P001"), ("291", "P001"), ("292", "P002")):
        grey = np.asarray(Image.open(kssd / "image" / f"{name}.tif"), dtype=np.uint16)
        stored[name] = grey * 8
        write_ct(root / "slices" / f"{name}.dcm", stored[name], patient=patient, study=f"1.2.3.{patient[-1]}")
    (root / "slices" / "290.txt").write_text("0 0.5 0.25 0.1 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n")
    (root / "slices" / "classes.txt").write_text("stone\ncyst\n")
    shutil.copy2(kssd / "label" / "291.tif", root / "masks" / "291.tif")
    return {"root": root, "stored": stored, "kssd": kssd}


def test_dicom_files_are_real_ct_storage(ct: dict) -> None:
    ds = pydicom.dcmread(ct["root"] / "slices" / "290.dcm")
    assert ds.SOPClassUID == CTImageStorage and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert int(ds.pixel_array.max()) == int(ct["stored"]["290"].max())


def test_records_groups_sidecars_and_default_window(ct: dict) -> None:
    root = ct["root"]
    assert detect_format(root / "slices") == "dicom"
    records, problems = _partition(dicom.read(root / "slices", masks=root / "masks"))
    assert problems == []
    by = {r.image.name: r for r in records}
    assert set(by) == {"290.dcm", "291.dcm", "292.dcm"}
    assert [by[n].group for n in ("290.dcm", "291.dcm", "292.dcm")] == ["P001", "P001", "P002"]
    assert all((r.width, r.height, r.render_suffix) == (512, 512, ".png") for r in records)
    # YOLO sidecar: normalised cx,cy,w,h and a polygon, names from classes.txt.
    b = by["290.dcm"].boxes
    assert [x.label for x in b] == ["stone", "cyst"]
    assert (b[0].x1, b[0].y1, b[0].x2, b[0].y2) == pytest.approx((230.4, 76.8, 281.6, 179.2))
    assert (b[1].x1, b[1].y1, b[1].x2, b[1].y2) == pytest.approx((51.2, 51.2, 153.6, 204.8))
    # Mask sidecar: the same boxes the masks reader finds in that mask.
    expected = masks.boxes_from_array(masks.load_mask(ct["kssd"] / "label" / "291.tif"))
    assert by["291.dcm"].annotated and by["291.dcm"].boxes == expected and len(expected) >= 1
    assert by["292.dcm"].annotated is False and by["292.dcm"].boxes == []  # no sidecar: reported, not a negative
    # Default window = the header's WindowCenter/Width (40, 400), applied to HU = stored - 1024.
    hu = ct["stored"]["290"].astype(np.float64) - 1024
    assert np.array_equal(_decode(by["290.dcm"].render()), _expected(hu, 40, 400))


@pytest.mark.parametrize(("window", "cw"), [("bone", (400, 1800)), ("-100,300", (-100, 300)),
                                            ("kidney-stone", (300, 1500)), ((50, 350), (50, 350))])
def test_window_option(ct: dict, window, cw) -> None:
    records, problems = _partition(dicom.read(ct["root"] / "slices" / "292.dcm", window=window))
    assert problems == [] and len(records) == 1
    hu = ct["stored"]["292"].astype(np.float64) - 1024
    assert np.array_equal(_decode(records[0].render()), _expected(hu, *cw))


def test_no_header_window_is_min_max_and_monochrome1_inverts(ct: dict, tmp_path: Path) -> None:
    stored = ct["stored"]["290"]
    write_ct(tmp_path / "a.dcm", stored, patient="P9", study="1.2.9", window=None, slope=2.0, intercept=-2048)
    write_ct(tmp_path / "b.dcm", stored, patient="P9", study="1.2.9", photometric="MONOCHROME1")
    records, problems = _partition(dicom.read(tmp_path))
    assert problems == []
    by = {r.image.name: r for r in records}
    hu = stored.astype(np.float64) * 2 - 2048
    lo, hi = hu.min(), hu.max()
    assert np.array_equal(_decode(by["a.dcm"].render()), _expected(hu, (lo + hi) / 2, hi - lo))
    assert np.array_equal(_decode(by["b.dcm"].render()), 255 - _expected(stored - 1024.0, 40, 400))


def test_sixteen_bit_png_slices(ct: dict, tmp_path: Path) -> None:
    stored = ct["stored"]["291"]
    assert cv2.imwrite(str(tmp_path / "s1.png"), stored)  # OpenCV writes a real 16-bit PNG
    records, problems = _partition(dicom.read(tmp_path, rescale_intercept=-1024, window="soft-tissue"))
    assert problems == [] and len(records) == 1
    rec = records[0]
    assert rec.group is None and (rec.width, rec.height) == (512, 512) and rec.annotated is False
    assert np.array_equal(_decode(rec.render()), _expected(stored - 1024.0, 40, 400))
    records, _ = _partition(dicom.read(tmp_path))  # default: min–max of the raw values
    lo, hi = float(stored.min()), float(stored.max())
    assert np.array_equal(_decode(records[0].render()), _expected(stored.astype(float), (lo + hi) / 2, hi - lo))


def test_bad_slices_are_problems_naming_the_file(ct: dict, tmp_path: Path) -> None:
    stored = ct["stored"]["290"]
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    write_ct(tmp_path / "short.dcm", stored, patient="P", study="1.2")
    ds = pydicom.dcmread(tmp_path / "short.dcm")
    ds.PixelData = ds.PixelData[:1000]
    ds.save_as(tmp_path / "short.dcm")
    write_ct(tmp_path / "multi.dcm", np.concatenate([stored, stored]), patient="P", study="1.2")
    ds = pydicom.dcmread(tmp_path / "multi.dcm")
    ds.NumberOfFrames, ds.Rows = 2, 512
    ds.save_as(tmp_path / "multi.dcm")
    write_ct(tmp_path / "badtxt.dcm", stored, patient="P", study="1.2")
    (tmp_path / "badtxt.txt").write_text("0 0.5 nan 0.1 0.1\n")
    write_ct(tmp_path / "badcls.dcm", stored, patient="P", study="1.2")
    (tmp_path / "badcls.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    records, problems = _partition(dicom.read(tmp_path, names="stone"))
    assert records == []
    got = {Path(p.file).name: p.problem for p in problems}
    assert set(got) == {"garbage.dcm", "short.dcm", "multi.dcm", "badtxt.dcm", "badcls.dcm"}
    assert "multi-frame" in got["multi.dcm"]
    assert "badtxt.txt line 1" in got["badtxt.dcm"] and "not finite" in got["badtxt.dcm"]
    assert "class id 3" in got["badcls.dcm"]
    records, problems = _partition(dicom.read(tmp_path, window="sideways"))
    assert records == [] and "window must be" in problems[0].problem


def test_parse_window() -> None:
    assert dicom.parse_window("BONE") == (400.0, 1800.0)
    assert dicom.parse_window(" 40 , 400 ") == (40.0, 400.0)
    assert dicom.parse_window(None) is None
    for bad in ("40,-1", "40", "nan,400", "40,400,3"):
        with pytest.raises(ValueError):
            dicom.parse_window(bad)
