"""bn_calibrate: the start model's BatchNorm re-estimated on the user's training images, function-preserving."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = {"imgsz": 64, "batch": 8, "device": "cpu", "workers": 0, "seed": 0, "amp": False, "plots": False}


def _model(ckpt_path: Path):
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().eval()


def test_calibrated_start_keeps_eval_output_and_reduces_train_mode_drift(tiny_yolo_dataset: Path, tmp_path: Path):
    from yolo_ft.train.bn_calibration import calibration_views, train_eval_drift
    from yolo_ft.train.bn_start import calibrated_start, train_images
    from yolo_ft.train.weights import bundled_weights

    images = train_images(tiny_yolo_dataset)
    assert len(images) == 24
    out = calibrated_start(bundled_weights(), tiny_yolo_dataset, 8, 160, tmp_path / "start.pt")
    before, after = _model(bundled_weights()), _model(out)

    # held-out CT views (the calibration used every 3rd image): eval output is the same function
    views = calibration_views(images[1:4], 160)
    with torch.no_grad():
        for v in views[:3]:
            a, b = before(v)[0], after(v)[0]
            rel = float((a - b).norm() / a.norm())
            assert rel < 1e-4, rel
            assert float((a[:, 4:] - b[:, 4:]).abs().max()) < 1e-3  # class scores
    # ... while train-mode features now agree with eval mode on this data (rms ratios nearer 1)
    d0, d1 = train_eval_drift(before, views), train_eval_drift(after, views)
    assert d1["head_rel_l2"] < d0["head_rel_l2"]
    assert d1["median_abs_log_ratio"] < d0["median_abs_log_ratio"]
    prov = torch.load(out, map_location="cpu", weights_only=False)["yolo_ft_provenance"]["bn_recalibrated_on"]
    assert prov["images"] == 8 and prov["layers"] > 80


def test_train_starts_from_the_calibrated_checkpoint_and_keeps_it_frozen(tiny_yolo_dataset: Path, tmp_path: Path):
    from yolo_ft.train import train

    rundir = tmp_path / "run"
    summary = train(tiny_yolo_dataset, rundir, schedule="two-stage", epochs=2, unfreeze_at=1, bn_calibrate=8, **TINY)
    assert summary["weights"] == str(rundir / "start.pt")
    start = _model(rundir / "start.pt").state_dict()
    head = torch.load(rundir / "weights" / "head.pt", map_location="cpu", weights_only=False)
    head_state = (head.get("ema") or head["model"]).state_dict()  # Ultralytics saves checkpoints in fp16
    backbone = [k for k in start if k.startswith("model.0.") and "bn.running_mean" in k]
    assert backbone
    for k in backbone:  # frozen backbone BN statistics: the calibrated ones, untouched by the head stage
        assert torch.equal(start[k].to(head_state[k].dtype), head_state[k]), k
