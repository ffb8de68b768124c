"""L2-SP in a real run: trainable transferred weights end closer to the start checkpoint than without it,
frozen ones stay bit-identical, and the anchor travels in the plan (so --resume pulls toward the same one)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from yolo_ft.records import YoloFtError
from yolo_ft.train.api import PLAN_FILE

TINY = {"imgsz": 64, "batch": 8, "device": "cpu", "workers": 0, "seed": 0, "amp": False, "plots": False}


def _layer(key: str) -> int | None:
    m = re.match(r"model\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def _conv_weights(state: dict) -> list[str]:
    return [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 4 and ".dfl" not in k]


@pytest.fixture(scope="module")
def l2sp_runs(tiny_yolo_dataset, start_ckpt, tmp_path_factory):
    from ultralytics.utils.torch_utils import unwrap_model

    from yolo_ft.train import train

    out = {}
    for alpha in (0.0, 40.0):
        live: dict[int, dict] = {}

        def snapshot(trainer, live=live) -> None:
            live[trainer.epoch] = {k: v.detach().clone() for k, v in unwrap_model(trainer.model).state_dict().items()}

        rundir = tmp_path_factory.mktemp(f"l2sp{alpha:g}") / "run"
        train(tiny_yolo_dataset, rundir, schedule="two-stage", epochs=2, unfreeze_at=1, weights=str(start_ckpt),
              lr0=0.02, optimizer="SGD", l2sp=alpha, warmup_epochs=0.0, callbacks={"on_train_epoch_end": [snapshot]},
              ultralytics={"nbs": 8}, **TINY)
        out[alpha] = (rundir, live)
    return out


def _distance(live: dict, start: dict, keys: list[str]) -> float:
    return sum(float((live[k].float() - start[k].float()).norm()) for k in keys)


def test_l2sp_keeps_trained_weights_nearer_the_start_and_frozen_ones_exact(l2sp_runs, start_ckpt):
    ckpt = torch.load(start_ckpt, map_location="cpu", weights_only=False)
    start = (ckpt.get("ema") or ckpt["model"]).float().state_dict()
    convs = _conv_weights(start)
    backbone = [k for k in convs if _layer(k) < 11]
    rest = [k for k in convs if _layer(k) >= 11]
    (_, plain), (_, pulled) = l2sp_runs[0.0], l2sp_runs[40.0]
    # head stage: the frozen backbone is untouched by the pull as by the optimizer
    assert [k for k in backbone if not torch.equal(pulled[0][k].float(), start[k])] == []
    # the trained neck/head moved, but clearly less far from the start than without L2-SP
    d_plain, d_pulled = _distance(plain[0], start, rest), _distance(pulled[0], start, rest)
    assert 0 < d_pulled < 0.5 * d_plain  # measured: 0.42 vs 3.76
    # after the unfreeze the backbone is pulled too (at its 0.3x LR, while re-warming: a smaller effect)
    d_plain, d_pulled = _distance(plain[1], start, backbone), _distance(pulled[1], start, backbone)
    assert 0 < d_pulled < 0.9 * d_plain  # measured: 0.41 vs 0.50


def test_the_anchor_is_recorded_in_the_plan(l2sp_runs, start_ckpt):
    plan = json.loads((l2sp_runs[40.0][0] / PLAN_FILE).read_text())
    assert plan["l2sp"] == 40.0 and plan["l2sp_anchor"] == str(start_ckpt.resolve())
    assert json.loads((l2sp_runs[0.0][0] / PLAN_FILE).read_text())["l2sp_anchor"] == ""


def test_l2sp_needs_pretrained_weights(tiny_yolo_dataset, tmp_path):
    from yolo_ft.train import train

    with pytest.raises(YoloFtError, match="l2sp"):
        train(tiny_yolo_dataset, tmp_path / "run", schedule="scratch", epochs=2, l2sp=1.0, **TINY)
    assert not (tmp_path / "run").exists()
