"""Helpers for the prepare tests: small real subsets of the kidney-stone data in any YOLO layout.

Everything is copied (never linked) into the test's tmp dir, so tests may corrupt files freely.
"""

from __future__ import annotations

import shutil
from pathlib import Path

KIDNEY_SPLITS = {"train": "train", "val": "validation"}


def kidney_pairs(kidney: Path, split: str, n: int, negatives: int = 1) -> list[tuple[Path, Path]]:
    """First ``negatives`` Normal + ``n - negatives`` STONE (image, label) pairs of a source split."""
    img_dir = kidney / "datasets" / "images" / KIDNEY_SPLITS[split]
    lbl_dir = kidney / "datasets" / "labels" / KIDNEY_SPLITS[split]
    names = sorted(p.name for p in img_dir.iterdir())
    pick = [x for x in names if x.startswith("Normal")][:negatives] + [x for x in names if x.startswith("STONE")][: n - negatives]
    return [(img_dir / x, lbl_dir / (Path(x).stem + ".txt")) for x in pick]


def make_layout(kidney: Path, root: Path, layout: str, n_train: int = 6, n_val: int = 3) -> Path:
    """Copy a small real subset into ``root`` in one of the YOLO layouts; returns the source to pass.

    layouts: "images_split" (images/{split}, labels/{split}), "split_images" ({split}/images, Roboflow
    with data.yaml), "nosplit" (images/, labels/), "flat" (images + txt together, classes.txt),
    "kidney_yaml" (the real kidney layout and yaml: foreign path, validation, empty test).
    """
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        for img, lbl in kidney_pairs(kidney, split, n):
            if layout == "images_split":
                di, dl = root / "images" / split, root / "labels" / split
            elif layout == "split_images":
                s = {"val": "valid"}.get(split, split)
                di, dl = root / s / "images", root / s / "labels"
            elif layout == "nosplit":
                di, dl = root / "images", root / "labels"
            elif layout == "flat":
                di = dl = root
            elif layout == "kidney_yaml":
                s = KIDNEY_SPLITS[split]
                di, dl = root / "datasets" / "images" / s, root / "datasets" / "labels" / s
            else:
                raise ValueError(layout)
            di.mkdir(parents=True, exist_ok=True)
            dl.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(img, di / img.name)
            shutil.copyfile(lbl, dl / lbl.name)
    if layout == "split_images":
        (root / "data.yaml").write_text(
            "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['KIDNEY_STONE']\n", encoding="utf-8")
    elif layout == "flat":
        (root / "classes.txt").write_text("KIDNEY_STONE\n", encoding="utf-8")
    elif layout == "kidney_yaml":
        shutil.copyfile(kidney / "kidney_stones.yaml", root / "kidney_stones.yaml")
    return root


def read_label_px(label: Path, w: int, h: int) -> list[tuple[int, float, float, float, float]]:
    """A written YOLO label back in pixel xyxy (independent of the code under test)."""
    out = []
    for line in label.read_text().splitlines():
        c, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        out.append((int(c), cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
    return out


def write_ct_slice(path: Path, stored, *, patient: str) -> None:
    """A minimal CT Image Storage DICOM (16-bit stored values, HU = stored - 1024, window 40/400)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop, "CT"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, f"1.2.3.{patient[-1]}", generate_uid()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1.0, -1024.0, 40, 400
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
