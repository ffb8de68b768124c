"""--resume after an interruption continues at the right stage with the right frozen layers."""

from __future__ import annotations

import json
import re

import pytest
import torch

from yolo_ft.records import YoloFtError


class Interrupted(Exception):
    pass


def _layer(key: str) -> int | None:
    m = re.match(r"model\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def test_resume_after_interrupt_finishes_in_the_right_stage(tiny_yolo_dataset, start_ckpt, tmp_path):
    from yolo_ft.train import train

    rundir = tmp_path / "run"
    common = dict(imgsz=64, batch=8, device="cpu", workers=0, amp=False, warmup_epochs=0.0, ultralytics={"nbs": 8})

    def stop_after_second_epoch(trainer):
        if trainer.epoch == 1:  # the last head-only epoch: checkpoints are written, then the "crash"
            raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny_yolo_dataset, rundir, schedule="two-stage", epochs=3, unfreeze_at=2, weights=str(start_ckpt),
              callbacks={"on_fit_epoch_end": [stop_after_second_epoch]}, **common)
    assert (rundir / "weights" / "head.pt").is_file() and not (rundir / "weights" / "full.pt").exists()
    assert not (rundir / "summary.json").exists()

    seen = {}

    def record(trainer):
        from ultralytics.utils.torch_utils import unwrap_model

        model = unwrap_model(trainer.model)
        seen[trainer.epoch] = {
            "backbone_grad": {p.requires_grad for n, p in model.named_parameters() if _layer(n) in range(11)},
            "backbone_bn_train": {m.training for n, m in model.named_modules()
                                  if _layer(n + ".") in range(11) and isinstance(m, torch.nn.BatchNorm2d)},
        }

    summary = train(None, rundir, resume=True, callbacks={"on_train_epoch_end": [record]})
    assert list(seen) == [2]  # only the remaining epoch ran ...
    assert seen[2] == {"backbone_grad": {True}, "backbone_bn_train": {True}}  # ... in stage "full"
    stages = json.loads((rundir / "yolo_ft_stages.json").read_text())
    assert [(s["name"], s["applied_at_epoch"]) for s in stages] == [("head", 0), ("full", 2)]
    assert [e["epoch"] for e in summary["per_epoch"]] == [1, 2, 3]
    assert [(s["name"], s["epochs"]) for s in summary["stages"]] == [("head", [1, 2]), ("full", [3, 3])]
    full = torch.load(rundir / "weights" / "full.pt", map_location="cpu", weights_only=False)
    assert full["epoch"] == 2
    lrs = [g["initial_lr"] for g in full["optimizer"]["param_groups"] if g["yolo_ft_group"] == "backbone"]
    assert lrs and all(lr == pytest.approx(0.01 * 0.3) for lr in lrs)
    start = torch.load(start_ckpt, map_location="cpu", weights_only=False)["model"].state_dict()
    head = torch.load(rundir / "weights" / "head.pt", map_location="cpu", weights_only=False)["ema"].state_dict()
    fs = full["ema"].state_dict()
    backbone = [k for k in start if _layer(k) in range(11)]
    assert all(torch.equal(start[k], head[k]) for k in backbone)
    assert any(not torch.equal(start[k], fs[k]) for k in backbone if k.endswith("running_mean"))

    with pytest.raises(YoloFtError, match="already finished"):
        train(None, rundir, resume=True)
