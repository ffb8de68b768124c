"""prepare() on DICOM CT slices: rendered PNGs (the one case where pixels are encoded), patient groups."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from prepare_helpers import read_label_px, write_ct_slice
from yolo_ft.prepare import prepare


def test_dicom_slices_render_to_png_and_patients_stay_together(shared_datasets: Path, tmp_path: Path) -> None:
    kssd = shared_datasets / "kssd2025-kidney-stone-masks" / "data"
    src = tmp_path / "slices"
    src.mkdir()
    patients = {"290": "P1", "291": "P1", "339": "P2", "419": "P3", "503": "P4", "672": "P5"}
    for name, patient in patients.items():
        grey = np.asarray(Image.open(kssd / "image" / f"{name}.tif"), dtype=np.uint16)
        write_ct_slice(src / f"{name}.dcm", grey * 8, patient=patient)
        (src / f"{name}.txt").write_text("0 0.5 0.25 0.1 0.2\n")
    (src / "classes.txt").write_text("stone\n")
    for seed in range(3):
        out = tmp_path / f"out{seed}"
        report = prepare(src, out, split="0.5,0.5,0", seed=seed, near_dup=False)
        assert report["format"] == "dicom" and report["classes"] == ["stone"]
        assert report["files"]["rendered"] == 6 and report["files"]["linked"] == 0
        where = {p.stem: p.parent.name for p in out.glob("images/*/*.png")}
        assert len(where) == 6 and where["290"] == where["291"]  # one patient, one split
        assert report["split"]["groups"] == 5
    png = next(out.glob("images/*/290.png"))
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == (512, 512) and img.dtype == np.uint8
    # stored = grey*8, HU = stored - 1024, window 40/400 → (HU + 160) / 400 * 255
    hu = np.asarray(Image.open(kssd / "image/290.tif"), dtype=np.float64) * 8 - 1024
    expected = np.clip(np.rint((hu + 160) / 400 * 255), 0, 255)
    grey = img if img.ndim == 2 else img[..., 0]
    assert np.abs(grey.astype(float) - expected).max() <= 1
    box = read_label_px(png.parent.parent.parent / "labels" / png.parent.name / "290.txt", 512, 512)
    assert np.allclose(box[0][1:], (230.4, 76.8, 281.6, 179.2), atol=1e-3)
