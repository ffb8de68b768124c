"""Fine-tuning schedules as data: which layer groups train, from which epoch, at what LR multiplier.

A :class:`Plan` is plain data (JSON round-trips it) and is interpreted by one trainer hook
(:mod:`yolo_ft.train.callbacks`) inside ONE Ultralytics training run. Every schedule is built by a
small function in :data:`SCHEDULES` (a registry, not an if-chain), so a new schedule is one entry.

Why the default ``two-stage`` recipe looks the way it does (the issue measured naive versions losing
to plain full fine-tuning):

* The unfreeze happens inside the same run, so warm-up, mosaic/close_mosaic, EMA, optimizer momentum
  and the LR schedule are continuous. A second ``train()`` restarts all of them, which is what lost.
* The head-only phase is SHORT (~15 % of the epochs, overlapping warm-up). Its only job is to let the
  re-initialised class branch of the head stop sending large random gradients into the pretrained
  backbone (the LP-FT argument, Kumar et al. 2022); long head-only training just wastes budget.
* After the unfreeze the backbone (layers 0-10 of YOLO11) trains at ``backbone_lr_mult`` x lr0
  (default 0.3): low enough to keep COCO features, high enough that a domain as far from COCO as CT
  can still adapt within a short budget.
* Frozen BatchNorm layers run in eval mode only while frozen; afterwards their statistics adapt.
* After the unfreeze, L2-SP (Li et al. 2018) pulls the transferred weights back toward their start values
  (:data:`DEFAULT_L2SP`): small data cannot drag the COCO features far. Freezing alone tied plain full
  fine-tuning on the kidney-stone CT proxy; freezing *and* pulling led it at 10 %, 25 % and 100 % of the data,
  while the pull on plain full fine-tuning lost (bench/results/CPU_2026-11-28.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from yolo_ft.records import YoloFtError

#: YOLO11 backbone = model layers 0..10 (Conv, Conv, C3k2, ..., SPPF, C2PSA); neck+head are 11..23.
BACKBONE_LAYERS: tuple[int, ...] = tuple(range(11))
#: Backbone blocks by resolution stage, top (deepest) first: the order ``gradual`` unfreezes them.
BACKBONE_BLOCKS: tuple[tuple[int, ...], ...] = ((9, 10), (7, 8), (5, 6), (3, 4), (0, 1, 2))
#: Name of the group holding every layer not claimed by another group (neck + detection head).
REST = "rest"

DEFAULT_BACKBONE_LR_MULT = 0.3
DEFAULT_UNFREEZE_FRACTION = 0.15
#: L2-SP strength a schedule gets when none is given: part of the ``two-stage`` recipe. ``full`` stays plain
#: fine-tuning (the baseline of every A/B), ``head``/``scratch`` have nothing transferred to pull, and
#: ``gradual`` with L2-SP was never measured.
DEFAULT_L2SP: dict[str, float] = {"two-stage": 1.0}


def default_l2sp(schedule: str) -> float:
    """The L2-SP alpha ``schedule`` uses unless one is set explicitly (0: off)."""
    return DEFAULT_L2SP.get(schedule, 0.0)


@dataclass(frozen=True)
class LayerGroup:
    """A named set of model layer indices; ``layers=None`` means "all layers not in another group"."""

    name: str
    layers: tuple[int, ...] | None
    lr_mult: float = 1.0


@dataclass(frozen=True)
class Stage:
    """From epoch ``start`` (0-based) until the next stage, only ``trainable`` groups receive gradients."""

    name: str
    start: int
    trainable: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """A resolved schedule for one run of ``epochs`` epochs in total."""

    schedule: str
    epochs: int
    groups: tuple[LayerGroup, ...]
    stages: tuple[Stage, ...]
    pretrained: bool = True
    rewarm_epochs: float = 1.0  # linear LR ramp for groups unfrozen mid-run (their momentum starts at zero)
    l2sp: float = 0.0  # pull of transferred conv weights toward the start checkpoint (L2-SP), per unit of LR
    l2sp_anchor: str = ""  # that start checkpoint (kept in the plan so --resume pulls toward the same one)
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise YoloFtError(f"schedule {self.schedule!r}: duplicate layer group names {names}")
        starts = [s.start for s in self.stages]
        if not self.stages or starts[0] != 0 or starts != sorted(set(starts)):
            raise YoloFtError(f"schedule {self.schedule!r}: stage starts must begin at 0 and increase, got {starts}")
        if starts[-1] >= self.epochs:
            raise YoloFtError(
                f"schedule {self.schedule!r}: stage {self.stages[-1].name!r} starts at epoch {starts[-1]} "
                f"but the run has only {self.epochs} epochs (lower --unfreeze-at or raise --epochs)"
            )
        for s in self.stages:
            unknown = set(s.trainable) - set(names)
            if unknown:
                raise YoloFtError(f"schedule {self.schedule!r}: stage {s.name!r} names unknown groups {sorted(unknown)}")

    # -- queries used by the trainer hook --------------------------------------------------------------
    def stage_index(self, epoch: int) -> int:
        """Index of the stage active at 0-based ``epoch``."""
        idx = 0
        for i, s in enumerate(self.stages):
            if epoch >= s.start:
                idx = i
        return idx

    def stage_end(self, i: int) -> int:
        """Exclusive end epoch of stage ``i``."""
        return self.stages[i + 1].start if i + 1 < len(self.stages) else self.epochs

    def group_of_layer(self, layer: int) -> str:
        for g in self.groups:
            if g.layers is not None and layer in g.layers:
                return g.name
        rest = [g.name for g in self.groups if g.layers is None]
        if not rest:
            raise YoloFtError(f"schedule {self.schedule!r}: layer {layer} belongs to no group")
        return rest[0]

    def frozen_layers(self, i: int, n_layers: int) -> list[int]:
        """Model layer indices frozen during stage ``i`` (for ``args.freeze`` and summary.json)."""
        trainable = set(self.stages[i].trainable)
        return [k for k in range(n_layers) if self.group_of_layer(k) not in trainable]

    # -- (de)serialisation: the plan travels to DDP workers and to --resume as JSON --------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        return cls(
            schedule=d["schedule"],
            epochs=int(d["epochs"]),
            groups=tuple(
                LayerGroup(g["name"], None if g["layers"] is None else tuple(g["layers"]), float(g["lr_mult"]))
                for g in d["groups"]
            ),
            stages=tuple(Stage(s["name"], int(s["start"]), tuple(s["trainable"])) for s in d["stages"]),
            pretrained=bool(d.get("pretrained", True)),
            rewarm_epochs=float(d.get("rewarm_epochs", 1.0)),
            l2sp=float(d.get("l2sp", 0.0)),
            l2sp_anchor=str(d.get("l2sp_anchor", "")),
            notes=d.get("notes", {}),
        )


# -- schedule builders --------------------------------------------------------------------------------


def default_unfreeze_at(epochs: int) -> int:
    """~15 % of the budget, at least 1 epoch, and always leaving at least one unfrozen epoch."""
    return max(1, min(epochs - 1, round(DEFAULT_UNFREEZE_FRACTION * epochs)))


def _unfreeze_at(epochs: int, unfreeze_at: int | None) -> int:
    k = default_unfreeze_at(epochs) if unfreeze_at is None else int(unfreeze_at)
    if not 0 < k < epochs:
        raise YoloFtError(f"--unfreeze-at must be between 1 and epochs-1 ({epochs - 1}), got {k}")
    return k


def two_stage(epochs: int, unfreeze_at: int | None = None, backbone_lr_mult: float = DEFAULT_BACKBONE_LR_MULT,
              **_: object) -> Plan:
    """Head (neck + detect head) only until ``unfreeze_at``, then everything; backbone at a lower LR."""
    k = _unfreeze_at(epochs, unfreeze_at)
    groups = (LayerGroup("backbone", BACKBONE_LAYERS, backbone_lr_mult), LayerGroup(REST, None, 1.0))
    stages = (Stage("head", 0, (REST,)), Stage("full", k, (REST, "backbone")))
    return Plan("two-stage", epochs, groups, stages)


def gradual(epochs: int, unfreeze_at: int | None = None, backbone_lr_mult: float = DEFAULT_BACKBONE_LR_MULT,
            step: int | None = None, **_: object) -> Plan:
    """Head only until ``unfreeze_at``; then one backbone block more every ``step`` epochs, top block first.

    The default step spreads the five blocks over the first half of the remaining epochs, so the
    whole network still trains together for the second half.
    """
    k = _unfreeze_at(epochs, unfreeze_at)
    n = len(BACKBONE_BLOCKS)
    if step is None:
        step = max(1, (epochs - k) // (2 * n))
    groups = [LayerGroup(f"block{i}", blk, backbone_lr_mult) for i, blk in enumerate(BACKBONE_BLOCKS)]
    groups.append(LayerGroup(REST, None, 1.0))
    stages = [Stage("head", 0, (REST,))]
    trainable = [REST]
    for i in range(n):
        start = k + i * step
        if start >= epochs:  # budget too short: unfreeze all remaining blocks in the last stage
            stages[-1] = Stage(stages[-1].name, stages[-1].start, tuple(trainable + [g.name for g in groups[i:n]]))
            break
        trainable.append(f"block{i}")
        stages.append(Stage("full" if i == n - 1 else f"unfreeze{i + 1}", start, tuple(trainable)))
    last = stages[-1]
    if last.name != "full" and set(last.trainable) == {g.name for g in groups}:
        stages[-1] = Stage("full", last.start, last.trainable)
    return Plan("gradual", epochs, tuple(groups), tuple(stages), notes={"step": step})


def full(epochs: int, **_: object) -> Plan:
    """Plain full fine-tuning: every layer at lr0 from epoch 0 (the baseline to beat)."""
    return Plan("full", epochs, (LayerGroup(REST, None, 1.0),), (Stage("full", 0, (REST,)),))


def head(epochs: int, **_: object) -> Plan:
    """Backbone (layers 0-10) frozen throughout; Ultralytics' ``freeze=11``."""
    groups = (LayerGroup("backbone", BACKBONE_LAYERS, 0.0), LayerGroup(REST, None, 1.0))
    return Plan("head", epochs, groups, (Stage("head", 0, (REST,)),))


def scratch(epochs: int, **_: object) -> Plan:
    """No pretrained weights (model built from ``yolo11?.yaml``); everything trains from epoch 0."""
    return Plan("scratch", epochs, (LayerGroup(REST, None, 1.0),), (Stage("full", 0, (REST,)),), pretrained=False)


SCHEDULES: dict[str, Callable[..., Plan]] = {
    "two-stage": two_stage,
    "gradual": gradual,
    "full": full,
    "head": head,
    "scratch": scratch,
}


def build_plan(schedule: str, epochs: int, **kwargs: object) -> Plan:
    """Resolve a schedule name and its knobs (``unfreeze_at``, ``backbone_lr_mult``, ``step``) into a Plan."""
    if epochs < 1:
        raise YoloFtError(f"--epochs must be >= 1, got {epochs}")
    try:
        builder = SCHEDULES[schedule]
    except KeyError:
        raise YoloFtError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}") from None
    return builder(epochs, **{k: v for k, v in kwargs.items() if v is not None})
