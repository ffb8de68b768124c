"""``train()``: one staged Ultralytics run -> RUNDIR/{weights/best.pt, weights/<stage>.pt, summary.json, plot}.

Settings come from three layers, later wins: :data:`DEFAULTS` < a YAML config (``configs/*.yaml``, or any
path) < explicit arguments (the CLI passes only the flags a user typed). A config may also carry an
``ultralytics:`` mapping of any other Ultralytics train argument (e.g. ``close_mosaic``, ``cos_lr``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import csv
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from yolo_ft.records import YoloFtError
from yolo_ft.train.schedules import DEFAULT_BACKBONE_LR_MULT, Plan, build_plan, default_l2sp

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
PLAN_FILE = "yolo_ft_plan.json"
SETTINGS_FILE = "yolo_ft_settings.json"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "val_map_per_epoch.png"

#: Defaults; every key can be set in a config file or overridden by an argument/flag of the same name.
DEFAULTS: dict[str, Any] = {
    "schedule": "two-stage",
    "epochs": 30,
    "unfreeze_at": None,  # None: ~15 % of epochs (schedules.default_unfreeze_at)
    "gradual_step": None,
    "backbone_lr_mult": DEFAULT_BACKBONE_LR_MULT,
    "rewarm_epochs": 1.0,  # linear LR ramp for groups unfrozen mid-run
    "l2sp": None,  # L2-SP pull toward the start checkpoint (callbacks.py); None: the schedule's (two-stage 1.0, else 0)
    "model": "yolo11n",  # architecture for `scratch` and the default weights name
    "weights": None,  # None: resolve_weights(None) -> local yolo11n.pt or the bundled COCO checkpoint
    "bn_calibrate": 0,  # N > 0: re-estimate the start model's BatchNorm stats on N train images (bn_start.py)
    "imgsz": 640,
    "batch": 16,
    "device": None,
    "workers": 8,
    "optimizer": "SGD",  # explicit: Ultralytics' 'auto' silently ignores lr0
    "lr0": 0.01,
    "lrf": 0.01,
    "momentum": 0.937,
    "weight_decay": 0.0005,
    "warmup_epochs": 3.0,
    "close_mosaic": 10,
    "cos_lr": False,
    "patience": 100,
    "seed": 0,
    "fraction": 1.0,
    "cache": False,
    # Ultralytics accumulates gradients until `nbs` images were seen (its default 64). On tiny datasets that
    # leaves very few optimizer steps; nbs = batch steps every batch (see configs/cpu-demo.yaml). None: 64.
    "nbs": None,
    "amp": True,
    "augment": "default",
    "val": True,
    "plots": False,
    "ultralytics": {},
}


def load_config(config: str | Path | None) -> dict[str, Any]:
    """A config by path, or by name from ``configs/`` (``kidney-stone`` -> configs/kidney-stone.yaml)."""
    if config is None:
        return {}
    p = Path(config)
    if not p.is_file():
        named = CONFIG_DIR / f"{config}.yaml"
        if named.is_file():
            p = named
        else:
            raise YoloFtError(f"{config}: config file not found (nor configs/{config}.yaml)")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise YoloFtError(f"{p}: invalid YAML ({e})") from e
    if not isinstance(d, dict):
        raise YoloFtError(f"{p}: a config must be a mapping of settings")
    unknown = set(d) - set(DEFAULTS)
    if unknown:
        raise YoloFtError(f"{p}: unknown settings {sorted(unknown)} (known: {', '.join(DEFAULTS)})")
    return d


def resolve_settings(config: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """DEFAULTS < config < overrides (None in overrides means "not given")."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise YoloFtError(f"unknown settings {sorted(unknown)}")
    s = {**DEFAULTS, **load_config(config)}
    s.update({k: v for k, v in overrides.items() if v is not None})
    s["ultralytics"] = dict(s.get("ultralytics") or {})
    return s


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _resolve_start(s: dict[str, Any], plan: Plan) -> str:
    if not plan.pretrained:
        return f"{s['model']}.yaml"
    spec = s["weights"]
    try:
        from yolo_ft.train.weights import resolve_weights
    except ImportError:  # the weights module is built separately; an explicit file still works without it
        if spec and Path(spec).is_file():
            return str(Path(spec).resolve())
        raise YoloFtError("no weights resolver available in this build: pass --weights PATH/TO/model.pt") from None
    return str(resolve_weights(spec if spec else None))


def _ultralytics_args(s: dict[str, Any], plan: Plan, start: str, data: str, rundir: Path) -> dict[str, Any]:
    from yolo_ft.train.augment import resolve_augment

    frozen0 = sorted({x for g in plan.groups if g.layers is not None and g.name not in plan.stages[0].trainable
                      for x in g.layers})
    args = {
        "model": start,
        "data": data,
        "epochs": int(s["epochs"]),
        "imgsz": int(s["imgsz"]),
        "batch": s["batch"],
        "workers": int(s["workers"]),
        "optimizer": s["optimizer"],
        "lr0": float(s["lr0"]),
        "lrf": float(s["lrf"]),
        "momentum": float(s["momentum"]),
        "weight_decay": float(s["weight_decay"]),
        "warmup_epochs": float(s["warmup_epochs"]),
        "close_mosaic": int(s["close_mosaic"]),
        "cos_lr": bool(s["cos_lr"]),
        "patience": int(s["patience"]),
        "seed": int(s["seed"]),
        "cache": s["cache"],
        "nbs": int(s["nbs"]) if s["nbs"] else 64,
        "amp": s["amp"],
        "val": bool(s["val"]),
        "plots": bool(s["plots"]),
        "pretrained": plan.pretrained,
        "freeze": frozen0 or None,
        "save_dir": str(rundir),
        "exist_ok": True,
        "verbose": True,
    }
    if s["device"] is not None:
        args["device"] = str(s["device"])
    args.update(resolve_augment(s["augment"]))
    args.update(s["ultralytics"])
    return args


def train(
    data: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: dict[str, list[Callable]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Fine-tune with a staged schedule in one Ultralytics run; returns the summary also written to summary.json.

    ``overrides`` are any keys of :data:`DEFAULTS` (``schedule``, ``epochs``, ``unfreeze_at``, ``imgsz``,
    ``batch``, ``device``, ``weights``, ``augment``, ``lr0``, ``backbone_lr_mult``, ``optimizer``, ``seed``,
    ``workers``, ``fraction``, ...). ``callbacks`` are extra Ultralytics callbacks ``{event: [fn]}``.
    """
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    rundir = Path(out).resolve()
    if resume:
        return _resume(rundir, callbacks, overrides)
    data = Path(data)
    if not data.is_file():
        raise YoloFtError(f"{data}: data.yaml not found")
    s = resolve_settings(config, overrides)
    if str(s["optimizer"]).lower() == "auto":
        raise YoloFtError("optimizer 'auto' ignores lr0; choose SGD, AdamW or Adam")
    plan = build_plan(s["schedule"], int(s["epochs"]), unfreeze_at=s["unfreeze_at"],
                      backbone_lr_mult=s["backbone_lr_mult"], step=s["gradual_step"])
    l2sp = default_l2sp(plan.schedule) if s["l2sp"] is None else float(s["l2sp"])
    plan = dataclasses.replace(plan, rewarm_epochs=float(s["rewarm_epochs"]), l2sp=l2sp)
    if plan.l2sp < 0 or (plan.l2sp and not plan.pretrained):
        raise YoloFtError(f"l2sp must be >= 0 and needs pretrained weights (schedule {plan.schedule!r}), got {plan.l2sp}")
    if rundir.exists() and any(rundir.iterdir()):
        if not overwrite:
            raise YoloFtError(f"{rundir}: output folder exists and is not empty (use --resume or --overwrite)")
        shutil.rmtree(rundir)
    rundir.mkdir(parents=True, exist_ok=True)
    data_used = str(data.resolve())
    if float(s["fraction"]) < 1.0:
        from yolo_ft.train.subsample import subsample_train

        # Ultralytics' DDP launcher empties RUNDIR before the workers start: keep the subset beside it then.
        ddp = "," in str(s["device"] or "")
        subset_dir = rundir.parent / f"{rundir.name}.subset" if ddp else rundir / "subset"
        data_used = str(subsample_train(data, float(s["fraction"]), int(s["seed"]), subset_dir))
    start = _resolve_start(s, plan)
    from yolo_ft.utils.untrusted import warn_foreign_label_caches, warn_untrusted_checkpoint

    warn_untrusted_checkpoint(start, what="start checkpoint")  # before anything unpickles it
    warn_foreign_label_caches(data)
    if int(s["bn_calibrate"] or 0) > 0 and plan.pretrained:
        from yolo_ft.train.bn_start import calibrated_start

        start = str(calibrated_start(start, data_used, int(s["bn_calibrate"]), int(s["imgsz"]), rundir / "start.pt"))
    if plan.l2sp:
        plan = dataclasses.replace(plan, l2sp_anchor=str(Path(start).resolve()))
    args = _ultralytics_args(s, plan, start, data_used, rundir)
    from yolo_ft.utils.atomic import atomic_write_text

    files = {PLAN_FILE: json.dumps(json.loads(plan.to_json()), indent=2),
             SETTINGS_FILE: json.dumps({"data": str(data.resolve()), "data_used": data_used, "start": start,
                                        "settings": s}, indent=2, default=str)}
    for name, content in files.items():
        atomic_write_text(rundir / name, content)
    trainer = _run(plan, args, callbacks, files)
    return write_summary(rundir, trainer)


def _resume(rundir: Path, callbacks, overrides: dict[str, Any]) -> dict[str, Any]:
    last = rundir / "weights" / "last.pt"
    plan_file = rundir / PLAN_FILE
    if not last.is_file() or not plan_file.is_file():
        raise YoloFtError(f"{rundir}: nothing to resume (needs weights/last.pt and {PLAN_FILE})")
    plan = Plan.from_json(plan_file.read_text())
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as e:  # a SIGKILL while Ultralytics wrote last.pt (it is not written atomically)
        raise YoloFtError(
            f"{last}: checkpoint is damaged ({type(e).__name__}), probably cut off while it was being written; "
            f"it cannot be resumed. The last complete stage checkpoint in {last.parent} can start a new run "
            f"(--weights), or start over") from None
    if ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) + 1 >= plan.epochs:
        raise YoloFtError(f"{rundir}: this run already finished; start a new run instead of --resume")
    del ckpt
    args = {"model": str(last), "resume": str(last), "save_dir": str(rundir)}
    for k in ("device", "workers", "batch", "imgsz"):  # Ultralytics lets these change on resume
        if overrides.get(k) is not None:
            args[k] = overrides[k]
    trainer = _run(plan, args, callbacks)
    return write_summary(rundir, trainer)


def _run(plan: Plan, args: dict[str, Any], callbacks, files: dict[str, str] | None = None) -> Any:
    from yolo_ft.train.callbacks import PLAN_ENV, RUN_FILES_ENV, StagedDetectionTrainer

    with _env(PLAN_ENV, plan.to_json()), _env(RUN_FILES_ENV, json.dumps(files or {})):
        trainer = StagedDetectionTrainer(overrides=args)
        for event, fns in (callbacks or {}).items():
            for fn in fns:
                trainer.add_callback(event, fn)
        trainer.train()
    return trainer


# -- summary ----------------------------------------------------------------------------------------------

_METRIC_COLS = {"mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)",
                "precision": "metrics/precision(B)", "recall": "metrics/recall(B)"}


def read_results(rundir: Path) -> list[dict[str, float]]:
    """Per-epoch rows of Ultralytics' results.csv (epoch is 1-based)."""
    path = rundir / "results.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = [{k.strip(): float(v) for k, v in r.items() if v not in (None, "")} for r in csv.DictReader(f)]
    by_epoch = {int(r["epoch"]): r for r in rows}  # a resumed run may repeat an epoch: keep the last
    return [by_epoch[e] for e in sorted(by_epoch)]


def _metrics(row: dict[str, float] | None) -> dict[str, float | None]:
    return {k: (row.get(c) if row else None) for k, c in _METRIC_COLS.items()}


def write_summary(rundir: Path, trainer: Any = None) -> dict[str, Any]:
    """Build summary.json and the per-epoch mAP plot from the run folder (works after DDP and resume)."""
    from yolo_ft.train.callbacks import STAGES_FILE
    from yolo_ft.utils.atomic import atomic_write_json

    plan = Plan.from_json((rundir / PLAN_FILE).read_text())
    info = json.loads((rundir / SETTINGS_FILE).read_text())
    stage_log = {e["index"]: e for e in json.loads((rundir / STAGES_FILE).read_text())} \
        if (rundir / STAGES_FILE).is_file() else {}
    rows = read_results(rundir)
    by_epoch = {int(r["epoch"]): r for r in rows}
    s = info["settings"]
    stages = []
    for i, st in enumerate(plan.stages):
        end = plan.stage_end(i)
        log = stage_log.get(i, {})
        ckpt = rundir / "weights" / f"{st.name}.pt"
        stages.append({
            "name": st.name,
            "epochs": [st.start + 1, end],  # 1-based, inclusive
            "frozen_layers": log.get("frozen_layers"),
            "trainable_params": log.get("trainable_params"),
            "lr": log.get("lr"),
            "optimizer": log.get("optimizer", s["optimizer"]),
            "metrics": _metrics(by_epoch.get(end)),
            "checkpoint": str(ckpt.relative_to(rundir)) if ckpt.is_file() else None,
        })
    best_row = max(rows, key=lambda r: r.get(_METRIC_COLS["mAP50-95"], -1.0)) if rows else None
    final = None
    if trainer is not None and isinstance(getattr(trainer, "metrics", None), dict):
        tm = trainer.metrics
        if all(c in tm for c in _METRIC_COLS.values()):
            final = {k: float(tm[c]) for k, c in _METRIC_COLS.items()}
    if final is None:
        final = _metrics(best_row)
    best_epoch = int(best_row["epoch"]) if best_row else None
    summary = {
        "weights": info["start"],
        "data": info["data"],
        "schedule": plan.schedule,
        "l2sp": plan.l2sp,
        "stages": stages,
        "best": {
            "path": "weights/best.pt",
            "epoch": best_epoch,
            "stage": plan.stages[plan.stage_index(best_epoch - 1)].name if best_epoch else None,
        },
        "metrics": final,
        "epochs": plan.epochs,
        "seed": s["seed"],
        "fraction": s["fraction"],
        "imgsz": s["imgsz"],
        "augment": s["augment"],
        "data_used": info["data_used"],
        "per_epoch": [{"epoch": int(r["epoch"]), **_metrics(r)} for r in rows],
        "plot": PLOT_FILE if _plot(rundir / PLOT_FILE, rows, plan) else None,
    }
    atomic_write_json(rundir / SUMMARY_FILE, summary)
    return summary


def _plot(path: Path, rows: list[dict[str, float]], plan: Plan) -> bool:
    """Validation mAP per epoch with the stage boundaries marked."""
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("mAP50", "-o"), ("mAP50-95", "-s")):
        ax.plot(ep, [r.get(_METRIC_COLS[key], float("nan")) for r in rows], style, ms=3, label=key)
    for st in plan.stages[1:]:
        ax.axvline(st.start + 0.5, color="grey", ls="--", lw=1)
        ax.text(st.start + 0.6, 0.02, f"→ {st.name}", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mAP")
    ax.set_title(f"{plan.schedule}: " + " → ".join(s.name for s in plan.stages))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return True
