"""Schedules are data: stage boundaries, layer groups and LR multipliers, resolved without training."""

from __future__ import annotations

import pytest

from yolo_ft.records import YoloFtError
from yolo_ft.train.schedules import BACKBONE_LAYERS, SCHEDULES, Plan, build_plan, default_unfreeze_at


def test_registry_has_the_five_schedules():
    assert set(SCHEDULES) == {"two-stage", "gradual", "full", "head", "scratch"}


def test_two_stage_boundary_groups_and_lr():
    plan = build_plan("two-stage", 30, unfreeze_at=4, backbone_lr_mult=0.2)
    assert [(s.name, s.start) for s in plan.stages] == [("head", 0), ("full", 4)]
    assert [plan.stage_index(e) for e in (0, 3, 4, 29)] == [0, 0, 1, 1]
    assert plan.stage_end(0) == 4 and plan.stage_end(1) == 30
    assert plan.frozen_layers(0, 24) == list(BACKBONE_LAYERS) == list(range(11))
    assert plan.frozen_layers(1, 24) == []
    assert {g.name: g.lr_mult for g in plan.groups} == {"backbone": 0.2, "rest": 1.0}
    assert plan.group_of_layer(10) == "backbone" and plan.group_of_layer(11) == "rest"


def test_default_unfreeze_is_short_head_phase():
    assert default_unfreeze_at(30) == 4 and default_unfreeze_at(10) == 2 and default_unfreeze_at(2) == 1
    assert build_plan("two-stage", 30).stages[1].start == 4


def test_gradual_unfreezes_top_block_first():
    plan = build_plan("gradual", 30, unfreeze_at=5, step=2)
    assert [(s.name, s.start) for s in plan.stages] == [
        ("head", 0), ("unfreeze1", 5), ("unfreeze2", 7), ("unfreeze3", 9), ("unfreeze4", 11), ("full", 13)]
    assert plan.frozen_layers(1, 24) == list(range(9))  # layers 9-10 (SPPF, C2PSA) unfrozen first
    assert plan.frozen_layers(2, 24) == list(range(7))
    assert plan.frozen_layers(5, 24) == []


def test_gradual_with_short_budget_unfreezes_rest_in_last_stage():
    plan = build_plan("gradual", 4, unfreeze_at=2, step=1)
    assert plan.stages[-1].start == 3 and plan.frozen_layers(len(plan.stages) - 1, 24) == []


def test_head_full_scratch():
    assert build_plan("head", 10).frozen_layers(0, 24) == list(range(11))
    assert build_plan("full", 10).frozen_layers(0, 24) == []
    s = build_plan("scratch", 10)
    assert s.pretrained is False and s.frozen_layers(0, 24) == []


def test_plan_json_round_trip():
    plan = build_plan("gradual", 20, unfreeze_at=3)
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("kw,msg", [
    ({"schedule": "nope", "epochs": 10}, "unknown schedule"),
    ({"schedule": "two-stage", "epochs": 10, "unfreeze_at": 10}, "between 1 and epochs-1"),
    ({"schedule": "two-stage", "epochs": 10, "unfreeze_at": 0}, "between 1 and epochs-1"),
    ({"schedule": "full", "epochs": 0}, "epochs must be"),
])
def test_bad_schedule_settings_are_clear_errors(kw, msg):
    with pytest.raises(YoloFtError, match=msg):
        build_plan(kw.pop("schedule"), kw.pop("epochs"), **kw)


def test_l2sp_is_part_of_two_stage_only():
    """The pull belongs to the two-stage recipe; `full` stays the plain baseline, `head`/`scratch` have nothing
    transferred to pull and `gradual` + L2-SP was never measured."""
    from yolo_ft.train.schedules import SCHEDULES, default_l2sp

    assert {s: default_l2sp(s) for s in SCHEDULES} == {
        "two-stage": 1.0, "gradual": 0.0, "full": 0.0, "head": 0.0, "scratch": 0.0}
