"""Re-estimate the start checkpoint's BatchNorm statistics on the user's own training images.

The bundled COCO checkpoint was rebuilt from an export with BatchNorm fused away; its statistics were
re-estimated on nine mixed images (COCO-like photos, CT, blood smears). On a new domain, train-mode
batch statistics then differ from the running statistics the frozen (eval-mode) backbone uses, so the
network sees a shift in its features the moment a layer unfreezes. Calibrating on the training split
first is function-preserving — eval output of the start model is unchanged (see
:func:`yolo_ft.train.bn_calibration.calibrate_batchnorm`) — and makes train and eval mode agree on this
data. Enabled with the ``bn_calibrate: N`` setting (N training images; 0 = off).
"""

from __future__ import annotations

import logging
from pathlib import Path

from yolo_ft.records import YoloFtError

log = logging.getLogger(__name__)


def train_images(data_yaml: str | Path) -> list[Path]:
    """The training images of a dataset, as Ultralytics resolves its data.yaml."""
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset

    info = check_det_dataset(str(data_yaml))
    entries = info["train"] if isinstance(info["train"], list) else [info["train"]]
    images: list[Path] = []
    for entry in entries:
        p = Path(entry)
        if p.is_dir():
            images += [f for f in p.rglob("*") if f.suffix.lower().lstrip(".") in IMG_FORMATS]
        elif p.suffix == ".txt" and p.is_file():
            images += [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
    return sorted(images)


def calibrated_start(start: str | Path, data_yaml: str | Path, n_images: int, imgsz: int, out: str | Path) -> Path:
    """Write ``out``: ``start`` with BatchNorm re-estimated on ``n_images`` evenly spaced training images."""
    import torch

    from yolo_ft.train.bn_calibration import calibrate_batchnorm, calibration_views
    from yolo_ft.utils.atomic import atomic_output_file

    images = train_images(data_yaml)
    if not images:
        raise YoloFtError(f"{data_yaml}: no training images to calibrate BatchNorm on")
    step = max(1, len(images) // n_images)
    chosen = images[::step][:n_images]
    ckpt = torch.load(start, map_location="cpu", weights_only=False)
    key = "ema" if ckpt.get("ema") is not None else "model"
    model = ckpt[key]
    model = model.float()  # kept fp32: rounding rewritten BN parameters to fp16 would change eval output
    # Calibrate at half the training size: mosaic tiles and whole images both appear in the views.
    stats = calibrate_batchnorm(model, calibration_views(chosen, imgsz))
    ckpt[key] = model
    if key == "ema":
        ckpt["model"] = None
    prov = dict(ckpt.get("yolo_ft_provenance") or {})
    prov["bn_recalibrated_on"] = {"data": str(data_yaml), "images": len(chosen), "imgsz": imgsz, **stats}
    ckpt["yolo_ft_provenance"] = prov
    out = Path(out)
    with atomic_output_file(out) as tmp:
        torch.save(ckpt, tmp)
    log.info("BatchNorm statistics re-estimated on %d training images -> %s", len(chosen), out)
    return out
