"""Fixtures for the train tests: one real tiny two-stage run shared by several tests (CPU, imgsz 64)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {"imgsz": 64, "batch": 8, "device": "cpu", "workers": 0, "seed": 0, "amp": False, "plots": False}


@pytest.fixture(scope="session")
def start_ckpt(tiny_trained_model: Path) -> Path:
    """The start checkpoint every fine-tune test begins from (a real Ultralytics best.pt, fp16 EMA)."""
    return tiny_trained_model


@pytest.fixture(scope="session")
def two_stage_run(tiny_yolo_dataset: Path, start_ckpt: Path, tmp_path_factory: pytest.TempPathFactory):
    """RUNDIR and summary of a real two-stage run: epoch 1 head only, epoch 2 everything."""
    from yolo_ft.train import train

    rundir = tmp_path_factory.mktemp("two_stage") / "run"
    live: dict[int, dict] = {}

    def snapshot(trainer) -> None:
        """The LIVE model (not the EMA) at the end of each epoch's training, plus BN modes and grad flags."""
        from ultralytics.utils.torch_utils import unwrap_model

        model = unwrap_model(trainer.model)
        live[trainer.epoch] = {
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "bn_training": {n: m.training for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        }

    import torch

    summary = train(tiny_yolo_dataset, rundir, schedule="two-stage", epochs=2, unfreeze_at=1,
                    weights=str(start_ckpt), lr0=0.02, backbone_lr_mult=0.25, optimizer="SGD",
                    callbacks={"on_train_epoch_end": [snapshot]}, warmup_epochs=0.0,
                    ultralytics={"nbs": 8}, **TINY)  # an optimizer step on every batch, no warm-up
    return rundir, summary, live
