"""Review fixtures: a model that really finds some kidney stones, and one finished review to inspect.

The shared ``tiny_trained_model`` (1 epoch from scratch at imgsz 64) predicts near-identical boxes
that never overlap a stone, so it cannot exercise TP matching. Here the COCO-pretrained YOLO11n from
../shared/weights (rebuilt into a trainable checkpoint by yolo_ft.train.onnx_import) is fine-tuned for
a few epochs on the same 24 training images: weak, but with true positives, false positives and misses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REVIEW_CONF = 0.01
REVIEW_IMGSZ = 256


@pytest.fixture(scope="session")
def review_model(tiny_yolo_dataset: Path, shared_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yolo_ft.train.onnx_import import import_onnx_weights
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("review_model")
    pretrained = import_onnx_weights(
        shared_weights / "yolo11n_int8.onnx", work / "yolo11n_coco.pt",
        calib_images=[tiny_yolo_dataset.parent / "images" / "train"], imgsz=REVIEW_IMGSZ,
    )
    model = YOLO(str(pretrained))
    model.train(
        data=str(tiny_yolo_dataset), epochs=15, imgsz=REVIEW_IMGSZ, batch=8, device="cpu", workers=0,
        project=str(work), name="ft", exist_ok=True, plots=False, verbose=False, seed=0, amp=False, val=False,
    )
    last = work / "ft" / "weights" / "last.pt"
    assert last.is_file()
    return last


@pytest.fixture(scope="session")
def reviewed(tiny_yolo_dataset: Path, review_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """One complete review (no App) of the val split at a low confidence, with an HTML report."""
    from yolo_ft.review.api import review

    report = tmp_path_factory.mktemp("review_report") / "report"
    return review(
        tiny_yolo_dataset, review_model, split="val", name="yolo-ft-test-eval", conf=REVIEW_CONF,
        launch=False, report=report, high_conf=0.05, small_area=40 * 40, progress=False,
    )
