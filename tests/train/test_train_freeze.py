"""The mechanics of the in-run unfreeze, read back from the checkpoints a real run wrote."""

from __future__ import annotations

import re

import pytest
import torch

BACKBONE = range(11)


def _state(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).state_dict(), ckpt


def _layer(key: str) -> int | None:
    m = re.match(r"model\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def test_frozen_backbone_params_and_bn_buffers_bit_identical_after_head_stage(two_stage_run, start_ckpt):
    rundir, _, live = two_stage_run
    start, _ = _state(start_ckpt)
    head, ckpt = _state(rundir / "weights" / "head.pt")
    assert ckpt["epoch"] == 0  # head.pt is the end of the 1-epoch head stage
    backbone = [k for k in start if _layer(k) in BACKBONE]
    kinds = {k.rsplit(".", 1)[1] for k in backbone}
    assert {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"} <= kinds
    changed = [k for k in backbone if not torch.equal(start[k], head[k])]
    assert changed == []
    # The EMA in a checkpoint moves slowly early on, so also check the LIVE model after the head epoch:
    # fp32 params and BN buffers (num_batches_tracked included) of layers 0-10 exactly as loaded.
    state = live[0]["state"]
    assert [k for k in backbone if not torch.equal(start[k].to(state[k].dtype), state[k])] == []
    assert not any(t for n, t in live[0]["bn_training"].items() if _layer(n + ".") in BACKBONE)
    assert not any(g for n, g in live[0]["requires_grad"].items() if _layer(n) in BACKBONE)
    # ... while the trainable neck/head did train during the same epoch (weights and BN statistics)
    rest = [k for k in start if _layer(k) is not None and _layer(k) >= 11 and "dfl" not in k]
    assert all(not torch.equal(start[k].to(state[k].dtype), state[k]) for k in rest
               if k.endswith(("running_mean", "num_batches_tracked")))
    assert sum(not torch.equal(start[k].to(state[k].dtype), state[k]) for k in rest) > 0.9 * len(rest)
    assert sum(not torch.equal(start[k], head[k]) for k in rest) > 0.3 * len(rest)  # visible in the EMA too


def test_backbone_changes_after_unfreeze(two_stage_run, start_ckpt):
    rundir, _, live = two_stage_run
    start, _ = _state(start_ckpt)
    full, ckpt = _state(rundir / "weights" / "full.pt")
    assert ckpt["epoch"] == 1
    state = live[1]["state"]
    assert all(t for n, t in live[1]["bn_training"].items())  # every BN back in train mode
    assert all(g for n, g in live[1]["requires_grad"].items() if ".dfl" not in n)
    for i in BACKBONE:
        keys = [k for k in start if _layer(k) == i]
        for k in keys:  # live model: every conv/BN weight, bias and running stat of the backbone moved
            if ".dfl" not in k:
                assert not torch.equal(start[k].to(state[k].dtype), state[k]), k
        nbt = [k for k in keys if k.endswith("num_batches_tracked")]
        assert nbt and all(int(state[k]) > int(start[k]) for k in nbt)
        # and the saved EMA of the stage checkpoint shows the BN statistics adapting
        bn = [k for k in keys if k.endswith("running_mean")]
        assert all(not torch.equal(start[k], full[k]) for k in bn), f"layer {i} BN stats did not adapt"


def test_unfrozen_layers_get_configured_discriminative_lr(two_stage_run):
    rundir, summary, _ = two_stage_run
    ckpt = torch.load(rundir / "weights" / "full.pt", map_location="cpu", weights_only=False)
    groups = ckpt["optimizer"]["param_groups"]
    by = {}
    for g in groups:
        by.setdefault(g["yolo_ft_group"], []).append(g)
    assert set(by) == {"backbone", "rest"}
    # lr0=0.02, backbone_lr_mult=0.25 in the fixture: initial (pre-schedule) LRs are exactly these
    assert all(g["initial_lr"] == pytest.approx(0.02 * 0.25, rel=1e-12) for g in by["backbone"])
    assert all(g["initial_lr"] == pytest.approx(0.02, rel=1e-12) for g in by["rest"])
    # both follow the same LR schedule lambda: at the last epoch lr/initial_lr is equal for all groups
    ratios = {round(g["lr"] / g["initial_lr"], 12) for g in groups}
    assert len(ratios) == 1 and 0 < ratios.pop() <= 1
    # weight decay only on conv weights, like Ultralytics' build_optimizer
    for g in groups:
        assert (g["weight_decay"] > 0) == (g["param_group"] == "weight")
    assert summary["stages"][1]["lr"] == {"backbone": pytest.approx(0.005), "rest": pytest.approx(0.02)}


def test_optimizer_is_the_explicit_one_never_auto(two_stage_run):
    rundir, summary, _ = two_stage_run
    args = (rundir / "args.yaml").read_text()
    assert "optimizer: SGD" in args and "lr0: 0.02" in args
    ckpt = torch.load(rundir / "weights" / "full.pt", map_location="cpu", weights_only=False)
    assert all(g["nesterov"] is True and "betas" not in g for g in ckpt["optimizer"]["param_groups"])
    assert {st["optimizer"] for st in summary["stages"]} == {"SGD"}


def test_auto_optimizer_is_refused(tiny_yolo_dataset, tmp_path):
    from yolo_ft.records import YoloFtError
    from yolo_ft.train import train

    with pytest.raises(YoloFtError, match="auto"):
        train(tiny_yolo_dataset, tmp_path / "r", optimizer="auto", epochs=2)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_head_schedule_with_adamw_keeps_backbone_frozen_throughout(tiny_yolo_dataset, start_ckpt, tmp_path):
    from yolo_ft.train import train

    rundir = tmp_path / "head"
    summary = train(tiny_yolo_dataset, rundir, schedule="head", epochs=1, weights=str(start_ckpt), optimizer="AdamW",
                    lr0=0.002, imgsz=64, batch=8, device="cpu", workers=0, amp=False)
    ckpt = torch.load(rundir / "weights" / "head.pt", map_location="cpu", weights_only=False)
    groups = ckpt["optimizer"]["param_groups"]
    assert all("betas" in g and "nesterov" not in g for g in groups)  # AdamW, not SGD, not auto's choice
    assert {g["initial_lr"] for g in groups if g["yolo_ft_group"] == "rest"} == {0.002}
    start, _ = _state(start_ckpt)
    end, _ = _state(rundir / "weights" / "head.pt")
    assert all(torch.equal(start[k], end[k]) for k in start if _layer(k) in BACKBONE)
    assert summary["stages"][0]["frozen_layers"] == list(BACKBONE)


def test_gradual_unfreezes_top_block_first_inside_one_run(tiny_yolo_dataset, start_ckpt, tmp_path):
    from ultralytics.utils.torch_utils import unwrap_model

    from yolo_ft.train import train

    seen = {}

    def record(trainer):
        model = unwrap_model(trainer.model)
        frozen = {_layer(n) for n, p in model.named_parameters() if not p.requires_grad and ".dfl" not in n}
        bn_eval = {_layer(n + ".") for n, m in model.named_modules()
                   if isinstance(m, torch.nn.BatchNorm2d) and not m.training}
        seen[trainer.epoch] = (sorted(frozen), sorted(bn_eval), len(trainer.optimizer.param_groups))

    rundir = tmp_path / "gradual"
    summary = train(tiny_yolo_dataset, rundir, schedule="gradual", epochs=3, unfreeze_at=1, gradual_step=1,
                    weights=str(start_ckpt), imgsz=64, batch=8, device="cpu", workers=0, amp=False,
                    callbacks={"on_train_epoch_end": [record]})
    assert [(s["name"], s["epochs"]) for s in summary["stages"]] == [
        ("head", [1, 1]), ("unfreeze1", [2, 2]), ("full", [3, 3])]
    assert seen[0][:2] == (list(range(11)), list(range(11)))
    assert seen[1][:2] == (list(range(9)), list(range(9)))  # SPPF (9) and C2PSA (10) first
    assert seen[2][:2] == ([], [])
    assert seen[0][2] == seen[1][2] == seen[2][2] == 18  # one optimizer, 6 layer groups x {weight, bn, bias}
    for name in ("head", "unfreeze1", "full"):
        assert (rundir / "weights" / f"{name}.pt").is_file()
