"""The one trainer hook that interprets a :class:`~yolo_ft.train.schedules.Plan` inside ONE Ultralytics run.

Ultralytics resets ``requires_grad`` in ``_setup_train`` (so freezing by hand before ``train()`` is undone)
and an unfreeze during a run is not supported upstream. :class:`StagedDetectionTrainer` is a
``DetectionTrainer`` with three small overrides, nothing else:

``build_optimizer``
    One optimizer for the whole run, with param groups per layer group x {weight, bn, bias} (the same
    weight-decay split as Ultralytics: decay on conv/linear weights only). Every group exists from epoch 0
    with ``lr = lr0 * lr_mult``; the LambdaLR scheduler stores that as the group's ``initial_lr``, so the
    LR schedule *and* Ultralytics' per-group warm-up (``x["initial_lr"] * lf(epoch)``) apply to the
    backbone groups exactly as to the head groups. Frozen parameters never get a ``.grad``, and PyTorch's
    SGD/AdamW skip parameters without a gradient (no weight decay, no momentum), so they cannot move. At
    the unfreeze they simply start receiving gradients: optimizer state, EMA and LR schedule stay
    continuous, and ``--resume`` reloads an optimizer whose group layout never changes.
``_model_train``
    Called by Ultralytics at the start of every epoch (after ``on_train_epoch_start`` and the scheduler
    step, before the first batch). It applies the stage of ``self.epoch``: ``requires_grad`` of every
    parameter, ``freeze_layer_names`` (which Ultralytics uses to put frozen BatchNorm into eval mode) and
    our own BatchNorm eval pass, so running_mean/var and num_batches_tracked of frozen layers do not
    change. EMA of a frozen tensor is ``lerp(ema, model, w)`` with ``ema == model``, an exact no-op.
``save_model``
    After Ultralytics writes last.pt, the last epoch of each stage is copied to ``weights/<stage>.pt``
    (with optimizer state, before Ultralytics strips last.pt at the end).

The plan reaches the trainer through the ``YOLO_FT_PLAN`` environment variable, because Ultralytics' DDP
launcher re-creates the trainer in a subprocess from its class and args only (args reject unknown keys);
environment variables are inherited by that subprocess. Under DDP the model is re-wrapped at each stage
change, since DistributedDataParallel only all-reduces parameters that required grad when it was built.
Limitation: that DDP path (``--device 0,1``) is written against Ultralytics 8.4.190's DDP launcher but has
not been run on a multi-GPU machine yet; single-GPU and CPU runs are what the tests and benchmarks cover.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from yolo_ft.records import YoloFtError
from yolo_ft.train.schedules import Plan

PLAN_ENV = "YOLO_FT_PLAN"
RUN_FILES_ENV = "YOLO_FT_RUN_FILES"  # JSON {file name: content} the trainer (re)writes into save_dir
STAGES_FILE = "yolo_ft_stages.json"
OPTIMIZERS = ("SGD", "AdamW", "Adam")
_LAYER = re.compile(r"^model\.(\d+)\.")
_NORM = tuple(v for k, v in nn.__dict__.items() if "Norm" in k and isinstance(v, type))


def layer_index(name: str) -> int | None:
    """``model.12.cv1.conv.weight`` -> 12 (None for names outside ``model.N.``)."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


class StagedDetectionTrainer(DetectionTrainer):
    """DetectionTrainer that follows a staged freeze/unfreeze plan within one run."""

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        super().__init__(cfg, overrides, _callbacks)
        text = os.environ.get(PLAN_ENV)
        if not text:
            raise YoloFtError(f"{PLAN_ENV} is not set: StagedDetectionTrainer needs a schedule plan")
        self.plan = Plan.from_json(text)
        if self.plan.epochs != self.epochs:
            raise YoloFtError(f"plan is for {self.plan.epochs} epochs but the run has {self.epochs}")
        self._applied_stage: int | None = None
        self._opt_steps = 0
        self._rewarm: tuple[set[str], int, int] | None = None  # (groups, first step, length) of the re-warm-up
        self._ddp_stage = 0  # DDP is wrapped in _setup_train with args.freeze == stage 0's frozen layers
        self._anchor: dict[int, torch.Tensor] | None = None  # L2-SP targets, loaded at the first step
        self.stage_log: list[dict] = []

    def _setup_train(self):
        """Write yolo-ft's run files (plan, settings) into save_dir first: Ultralytics' DDP launcher deletes
        save_dir before spawning the workers, so the rank-0 worker puts them back."""
        if RANK in {-1, 0} and os.environ.get(RUN_FILES_ENV):
            save_dir = Path(self.save_dir)
            save_dir.mkdir(parents=True, exist_ok=True)
            for name, content in json.loads(os.environ[RUN_FILES_ENV]).items():
                if not (save_dir / name).is_file():
                    tmp = save_dir / f".{name}.tmp"
                    tmp.write_text(content)
                    tmp.replace(save_dir / name)
        super()._setup_train()

    # -- optimizer ---------------------------------------------------------------------------------------
    def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
        """Param groups per (layer group, weight/bn/bias); explicit optimizer only, lr0 respected."""
        canon = {o.lower(): o for o in OPTIMIZERS}.get(str(name).lower())
        if canon is None:
            raise YoloFtError(f"optimizer {name!r} is not supported; use one of {', '.join(OPTIMIZERS)} (never 'auto')")
        buckets: dict[tuple[str, str], list[nn.Parameter]] = {}
        for module_name, module in unwrap_model(model).named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                full = f"{module_name}.{param_name}" if module_name else param_name
                idx = layer_index(full)
                group = self.plan.group_of_layer(idx) if idx is not None else self._rest_group()
                kind = "bias" if "bias" in full else "bn" if isinstance(module, _NORM) or "logit_scale" in full else "weight"
                buckets.setdefault((group, kind), []).append(param)
        if canon == "SGD":
            optim_args = {"lr": lr, "momentum": momentum, "nesterov": True}
        else:
            optim_args = {"lr": lr, "betas": (momentum, 0.999), "weight_decay": 0.0}
        param_groups = []
        for g in self.plan.groups:
            for kind in ("weight", "bn", "bias"):
                params = buckets.get((g.name, kind))
                if not params:
                    continue
                param_groups.append({
                    "params": params,
                    **optim_args,
                    "lr": lr * g.lr_mult,
                    "weight_decay": decay if kind == "weight" else 0.0,
                    # Ultralytics' warm-up starts "bias" groups at warmup_bias_lr (0.1) and the rest at 0. A pretrained
                    # group with a reduced LR must not get that 0.1 bias kick: its biases ramp from 0 like weights.
                    "param_group": kind if (kind != "bias" or g.lr_mult == 1.0) else "bias_scaled",
                    "yolo_ft_group": g.name,
                    "lr_mult": g.lr_mult,
                })
        fused = {"fused": True} if canon in {"Adam", "AdamW"} and next(model.parameters()).is_cuda else {}
        optimizer = getattr(torch.optim, canon)(param_groups, **fused)
        LOGGER.info(
            f"yolo-ft optimizer: {canon}(lr0={lr}, momentum={momentum}, decay={decay}) groups "
            + ", ".join(f"{g.name}x{g.lr_mult:g}" for g in self.plan.groups)
        )
        return optimizer

    def _rest_group(self) -> str:
        rest = [g.name for g in self.plan.groups if g.layers is None]
        return rest[0] if rest else self.plan.groups[-1].name

    # -- the stage hook ----------------------------------------------------------------------------------
    def _model_train(self):
        """Apply the stage for the current epoch, then train mode with frozen BatchNorm kept in eval."""
        i = self.plan.stage_index(int(getattr(self, "epoch", self.start_epoch)))
        if i != self._applied_stage:
            self._apply_stage(i)
        super()._model_train()  # model.train(); BN whose name matches freeze_layer_names -> eval
        frozen = self._frozen
        for name, m in unwrap_model(self.model).named_modules():
            idx = layer_index(name + ".")
            if idx is not None and idx in frozen and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()  # running stats and num_batches_tracked stay fixed

    def _apply_stage(self, i: int) -> None:
        stage = self.plan.stages[i]
        model = unwrap_model(self.model)
        n_layers = len(model.model)
        frozen = set(self.plan.frozen_layers(i, n_layers))
        self._frozen = frozen
        self.freeze_layer_names = [f"model.{x}." for x in sorted(frozen)] + [".dfl"]
        for name, p in model.named_parameters():
            idx = layer_index(name)
            if (idx is not None and idx in frozen) or ".dfl" in name:
                p.requires_grad_(False)
                p.grad = None
            elif p.dtype.is_floating_point:
                p.requires_grad_(True)
        if isinstance(self.model, nn.parallel.DistributedDataParallel) and i != self._ddp_stage:
            # DDP only hooks parameters that required grad at construction: rebuild it for the new stage.
            # All ranks reach this at the same epoch (the constructor broadcasts parameters from rank 0). Dropping
            # the old wrapper frees its reducer, which removes its autograd hooks from the parameters.
            old = self.model
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index], find_unused_parameters=not bool(self.args.compile)
            )
            del old
            self._ddp_stage = i
        self._applied_stage = i
        newly = set(stage.trainable) - (set(self.plan.stages[i - 1].trainable) if i > 0 else set(stage.trainable))
        if newly and int(getattr(self, "epoch", 0)) == stage.start and self.plan.rewarm_epochs > 0:
            steps = max(1, round(self.plan.rewarm_epochs * len(self.train_loader) / max(1, self.accumulate)))
            self._rewarm = (newly, self._opt_steps, steps)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lrs = {}
        for g in self.optimizer.param_groups:
            lrs.setdefault(g.get("yolo_ft_group", "?"), g.get("initial_lr", g["lr"]))
        entry = {
            "name": stage.name,
            "index": i,
            "start_epoch": stage.start,
            "end_epoch": self.plan.stage_end(i),
            "applied_at_epoch": int(getattr(self, "epoch", self.start_epoch)),
            "frozen_layers": sorted(frozen),
            "trainable_groups": list(stage.trainable),
            "trainable_params": int(trainable),
            "lr": {k: v for k, v in lrs.items() if k in stage.trainable},
            "optimizer": type(self.optimizer).__name__,
        }
        self.stage_log.append(entry)
        LOGGER.info(
            f"yolo-ft stage {stage.name!r} from epoch {stage.start + 1}: frozen layers {sorted(frozen) or 'none'}, "
            f"{trainable:,} trainable params, lr {entry['lr']}"
        )
        if RANK in {-1, 0}:
            self._write_stage_log()

    def _write_stage_log(self) -> None:
        path = Path(self.save_dir) / STAGES_FILE
        old = json.loads(path.read_text()) if path.exists() else []
        keep = [e for e in old if e["index"] not in {x["index"] for x in self.stage_log}]  # resume keeps earlier stages
        data = sorted(keep + self.stage_log, key=lambda e: e["index"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)

    def optimizer_step(self):
        """Linearly re-warm the LR of just-unfrozen groups over ``plan.rewarm_epochs`` (fresh momentum, no kick).

        Scales the groups' current LR (whatever warm-up/scheduler set) for this step only, then restores it, so
        the scheduler and Ultralytics' warm-up bookkeeping are untouched.
        """
        self._opt_steps += 1
        saved = None
        if self._rewarm is not None:
            groups, first, length = self._rewarm
            f = (self._opt_steps - first) / length
            if f >= 1:
                self._rewarm = None
            else:
                saved = []
                for g in self.optimizer.param_groups:
                    if g.get("yolo_ft_group") in groups:
                        saved.append((g, g["lr"]))
                        g["lr"] = g["lr"] * f
        try:
            super().optimizer_step()
        finally:
            for g, lr in saved or ():
                g["lr"] = lr
        if self.plan.l2sp > 0:
            self._pull_to_start()

    # -- L2-SP -----------------------------------------------------------------------------------------------
    def _pull_to_start(self) -> None:
        """Decoupled L2-SP (Li et al. 2018): after each step, move every trainable transferred conv/linear weight
        ``lr x l2sp`` of the way back to its start-checkpoint value. Small data cannot drag the pretrained
        features far; frozen weights (no gradient) and weights the start checkpoint lacks (the class convs
        re-initialised for a new class count) are left alone, BatchNorm and biases too."""
        if self._anchor is None:
            self._anchor = self._load_anchor()
        with torch.no_grad():
            for g in self.optimizer.param_groups:
                if g.get("param_group") != "weight":
                    continue
                pairs = [(p, self._anchor[id(p)]) for p in g["params"] if p.requires_grad and id(p) in self._anchor]
                if pairs:  # p += lr * alpha * (p0 - p), one fused multi-tensor op per group
                    ps, p0s = zip(*pairs)
                    torch._foreach_lerp_(list(ps), list(p0s), g["lr"] * self.plan.l2sp)

    def _load_anchor(self) -> dict[int, torch.Tensor]:
        """Start-checkpoint values of the model's weights, by parameter id (same name and shape only)."""
        path = self.plan.l2sp_anchor
        if not path or not Path(path).is_file():
            raise YoloFtError(f"l2sp: start checkpoint {path or '(none recorded in the plan)'} not found")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        start = (ckpt.get("ema") or ckpt["model"]).float().state_dict()
        anchor = {}
        for name, p in unwrap_model(self.model).named_parameters():
            ref = start.get(name)
            if ref is not None and ref.shape == p.shape:
                anchor[id(p)] = ref.to(device=p.device, dtype=p.dtype)
        LOGGER.info(f"yolo-ft L2-SP: {len(anchor)} weight tensors pulled toward {path} (alpha {self.plan.l2sp:g})")
        return anchor

    # -- per-stage checkpoints -----------------------------------------------------------------------------
    def save_model(self):
        saved = super().save_model()
        i = self.plan.stage_index(self.epoch)
        if saved and self.epoch + 1 == self.plan.stage_end(i):
            dst = self.wdir / f"{self.plan.stages[i].name}.pt"
            shutil.copyfile(self.last, dst.with_suffix(".tmp"))
            dst.with_suffix(".tmp").replace(dst)
        return saved
