"""The bundled COCO YOLO11n, rebuilt from the int8 ONNX in ../shared/weights: it detects, it matches
onnxruntime, its BatchNorm behaves in train mode, and the committed file is what the code produces.

Real components only: the real ONNX file, onnxruntime, Ultralytics' own loader and predictor.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo_ft.utils.ultralytics_env import prepare_ultralytics

prepare_ultralytics()

from ultralytics import YOLO  # noqa: E402
from ultralytics.utils import ASSETS  # noqa: E402

from yolo_ft.train.bn_calibration import (  # noqa: E402
    calibrate_batchnorm,
    calibration_views,
    conv_bn_modules,
    fused_conv_params,
    train_eval_drift,
)
from yolo_ft.train.onnx_import import (  # noqa: E402
    import_onnx_model,
    read_onnx_weights,
)
from yolo_ft.train.weights import bundled_weights, compare_with_onnx, import_onnx_weights  # noqa: E402
from yolo_ft.utils.hashing import sha256_file  # noqa: E402

ONNX_SHA256 = "5ea9b19c6c4d89041175fd2d4f9d2e1581d16f37b817021d547278fc5e2f2b58"  # from shared/weights/SOURCE.md
COCO_FIRST = {0: "person", 1: "bicycle", 2: "car", 5: "bus", 79: "toothbrush"}


@pytest.fixture(scope="module")
def onnx_path(shared_weights: Path) -> Path:
    return shared_weights / "yolo11n_int8.onnx"


@pytest.fixture(scope="module")
def calib_images(shared_datasets: Path) -> list[Path]:
    """The exact calibration set of the committed checkpoint (see yolo_ft/assets/PROVENANCE.md):
    3 COCO-like photos plus 4 kidney CT and 2 blood-smear training images, so train-mode BN stays
    sane on the medical data this tool is for as well as on natural images."""
    import matplotlib

    kidney = shared_datasets / "kidney-stone-ct-yolo/datasets/images/train"
    bccd = shared_datasets / "bccd-blood-cells-voc/BCCD/JPEGImages"
    return [
        Path(ASSETS) / "bus.jpg",
        Path(ASSETS) / "zidane.jpg",
        Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg",
        kidney / "Normal---1-_jpg.rf.130bcffc5598c9e5f45d74c788ee2a47.jpg",
        kidney / "STONE---1062-_jpg.rf.ee32ac653419b03b4c9f79600e6558e9.jpg",
        kidney / "STONE---1272-_jpg.rf.ead7bf1ff51b70513df07cf1d918c6ec.jpg",
        kidney / "STONE---1467-_JPG.rf.87f59a529ccc3dda096331484fb52885.jpg",
        bccd / "BloodImage_00001.jpg",
        bccd / "BloodImage_00100.jpg",
    ]


@pytest.fixture(scope="module")
def committed() -> Path:
    return bundled_weights()


@pytest.fixture(scope="module")
def reimported(onnx_path: Path, calib_images: list[Path], tmp_path_factory) -> Path:
    """The conversion run again now, exactly as PROVENANCE.md records it (fp16 storage)."""
    out = tmp_path_factory.mktemp("reimport") / "yolo11n_coco.pt"
    return import_onnx_weights(onnx_path, out, calib_images=calib_images, imgsz=640)


@pytest.fixture(scope="module")
def fp32_model(onnx_path: Path, tmp_path_factory):
    """An fp32 import (bus + zidane calibration) loaded back through Ultralytics' own loader."""
    out = tmp_path_factory.mktemp("fp32") / "yolo11n_fp32.pt"
    import_onnx_weights(onnx_path, out, imgsz=640, half=False)
    return YOLO(str(out)).model


def test_committed_checkpoint_detects_bus_and_people(committed: Path):
    result = YOLO(str(committed)).predict(Path(ASSETS) / "bus.jpg", imgsz=640, conf=0.25, device="cpu", verbose=False)[0]
    dets = [(result.names[int(c)], float(s), b) for c, s, b in zip(result.boxes.cls, result.boxes.conf, result.boxes.xyxy.tolist())]
    buses = [d for d in dets if d[0] == "bus"]
    people = [d for d in dets if d[0] == "person"]
    assert buses and max(d[1] for d in buses) > 0.5, dets
    assert len(people) >= 3, dets
    # the bus spans the photo's width (810 px) in its upper-middle part: boxes are in the right place
    x1, y1, x2, y2 = max(buses, key=lambda d: d[1])[2]
    assert x1 < 100 and x2 > 700 and 150 < y1 < 300 and 650 < y2 < 800


def test_checkpoint_is_a_plain_ultralytics_checkpoint_with_provenance(committed: Path, onnx_path: Path, calib_images):
    ckpt = torch.load(committed, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == -1 and ckpt["ema"] is None and ckpt["optimizer"] is None
    assert ckpt["train_args"]["task"] == "detect" and ckpt["train_args"]["model"] == "yolo11n.yaml"
    assert {"date", "version", "model", "train_args"} <= ckpt.keys()
    prov = ckpt["yolo_ft_provenance"]
    assert prov["source_sha256"] == ONNX_SHA256 == sha256_file(onnx_path)
    assert prov["license"] == "AGPL-3.0"
    assert prov["calibration_images"] == [p.name for p in calib_images]
    model = ckpt["model"]
    assert next(model.parameters()).dtype == torch.float16  # Ultralytics' own storage format
    assert committed.stat().st_size < 7_000_000
    assert len(model.names) == 80 and all(model.names[k] == v for k, v in COCO_FIRST.items())
    assert model.yaml["scale"] == "n" and model.stride.tolist() == [8.0, 16.0, 32.0]
    dfl = model.model[-1].dfl.conv.weight.float().flatten()
    assert torch.equal(dfl, torch.arange(16, dtype=torch.float32))


def test_unfused_layers_equal_the_onnx_convs(fp32_model, onnx_path: Path):
    """For every Conv+BN, the eval-mode equivalent conv is exactly the dequantized ONNX conv."""
    tensors = read_onnx_weights(onnx_path).tensors
    mods = conv_bn_modules(fp32_model)
    assert len(mods) == 81  # + 6 plain head convs + DFL = the 88 ConvInteger nodes of the ONNX graph
    for name, m in mods:
        w, b = fused_conv_params(m)
        w_ref = torch.from_numpy(tensors[f"{name}.conv.weight"]).double()
        b_ref = torch.from_numpy(tensors[f"{name}.conv.bias"]).double()
        assert torch.allclose(w, w_ref, rtol=1e-6, atol=1e-9), name
        assert torch.allclose(b, b_ref, rtol=1e-5, atol=1e-5), name
        assert m.bn.running_var.min() >= 0 and (m.bn.running_var > 0).any(), name  # real statistics, not 1s


def test_fp32_import_matches_onnxruntime(fp32_model, onnx_path: Path, calib_images):
    images = calib_images[:3] + calib_images[4:5]
    # the float-equivalent graph: same math, so only float rounding may differ
    deq = compare_with_onnx(fp32_model, onnx_path, images, dequantize=True)
    assert deq["conf_anchors"] > 20
    assert deq["score_max_abs"] < 1e-4 and deq["conf_box_max_abs_px"] < 0.01 and deq["rel_l2"] < 1e-5, deq
    # the original int8 graph: ORT also quantizes activations to uint8 at run time, hence a looser bound
    # (COCO-like photos; on grey CT slices the run-time uint8 activations are coarser still)
    raw = compare_with_onnx(fp32_model, onnx_path, images[:3])
    assert raw["rel_l2"] < 0.05 and raw["conf_score_max_abs"] < 0.1 and raw["conf_box_max_abs_px"] < 8.0, raw
    assert compare_with_onnx(fp32_model, onnx_path, images[3:])["rel_l2"] < 0.05


def test_committed_fp16_checkpoint_matches_onnxruntime(committed: Path, onnx_path: Path, calib_images):
    model = YOLO(str(committed)).model
    images = calib_images[:3]
    deq = compare_with_onnx(model, onnx_path, images, dequantize=True)
    assert deq["conf_score_max_abs"] < 0.01 and deq["conf_box_max_abs_px"] < 1.0 and deq["rel_l2"] < 5e-3, deq
    raw = compare_with_onnx(model, onnx_path, images)
    assert raw["rel_l2"] < 0.05 and raw["conf_score_max_abs"] < 0.1 and raw["conf_box_max_abs_px"] < 8.0, raw


def test_train_mode_batchnorm_stays_close_to_eval(onnx_path: Path, committed: Path, calib_images):
    """Calibrated BN: train-mode features within 1.6x of eval everywhere; uncalibrated (mean 0,
    var 1) they drift >3x, which is what the calibration is for."""
    views = calibration_views(calib_images[:1], 640)[:1]  # bus.jpg, one train-mode batch
    held_out = [torch.from_numpy(v.copy()) for v in _held_out_views(calib_images)]
    naive, _ = import_onnx_model(onnx_path)
    before = train_eval_drift(naive, views)
    calibrated = YOLO(str(committed)).model.float()
    after = train_eval_drift(calibrated, views)
    after_held = train_eval_drift(calibrated, held_out)
    assert before["ratio_max"] > 3.0 and before["head_rel_l2"] > 0.15, before
    assert 1 / 1.6 < after["ratio_min"] and after["ratio_max"] < 1.6, after
    assert after["median_abs_log_ratio"] < 0.1 and after["head_rel_l2"] < 0.12, after
    assert 1 / 1.8 < after_held["ratio_min"] and after_held["ratio_max"] < 1.8, after_held


def _held_out_views(calib_images: list[Path]) -> list[np.ndarray]:
    """A kidney CT slice not used for calibration, letterboxed (train-mode drift where it matters)."""
    from yolo_ft.train.bn_calibration import letterbox, read_image

    folder = calib_images[3].parent
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    used = {p.name for p in calib_images}
    pick = next(p for p in names[300:] if p.name not in used)
    return [letterbox(read_image(pick), 640)[None]]


def test_calibration_keeps_eval_output(fp32_model, calib_images):
    """Re-calibrating on different images (e.g. the user's own) changes BN statistics, not predictions."""
    m = copy.deepcopy(fp32_model).float().eval()
    x = calibration_views(calib_images[:1], 320)[0]
    with torch.no_grad():
        before = m(x)[0]
        stats_before = m.model[4].cv1.bn.running_var.clone()
        calibrate_batchnorm(m, calibration_views(calib_images[3:5], 320))
        after = m(x)[0]
    assert not torch.allclose(stats_before, m.model[4].cv1.bn.running_var)
    assert (after - before).abs()[:, 4:].max() < 1e-4 and (after - before).abs().max() < 0.05


def test_rerunning_the_conversion_reproduces_the_committed_checkpoint(reimported: Path, committed: Path):
    new = torch.load(reimported, map_location="cpu", weights_only=False)
    old = torch.load(committed, map_location="cpu", weights_only=False)
    sd_new, sd_old = new["model"].state_dict(), old["model"].state_dict()
    assert sd_new.keys() == sd_old.keys()
    worst = 0.0
    for k, a in sd_old.items():
        b = sd_new[k]
        assert a.shape == b.shape and a.dtype == b.dtype, k
        if a.is_floating_point():
            # fp16 storage: allow a rounding flip of 1 ulp where float32 sums differ in their last bit
            d = ((a.float() - b.float()).abs() / (a.float().abs() * 2**-10 + 1e-6)).max().item()
            worst = max(worst, d)
        else:
            assert torch.equal(a, b), k
    assert worst <= 1.0, worst
    assert {k: v for k, v in new["yolo_ft_provenance"].items() if k != "date"} == {
        k: v for k, v in old["yolo_ft_provenance"].items() if k != "date"
    }
    assert new["model"].names == old["model"].names
