"""``yolo-ft train`` and ``yolo-ft compare`` (argparse only at import time).

Every tuning flag defaults to None, meaning "not given": the library then takes the value from
``--config`` or from its defaults, so a flag always overrides the config and nothing else does.
"""

from __future__ import annotations

import argparse


def _batch(text: str) -> int | float:
    v = float(text)
    return int(v) if v.is_integer() else v


def _csv(kind):
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _cache(text: str) -> bool | str:
    return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)


def _tuning_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by train and compare; names match the config keys (dashes -> underscores)."""
    p.add_argument("--config", help="YAML recipe: a path or a name in configs/ (default, kidney-stone, cpu-smoke, cpu-demo)")
    p.add_argument("--unfreeze-at", type=int, help="epoch at which the backbone unfreezes (gradual: first step); "
                   "default ~15%% of --epochs")
    p.add_argument("--imgsz", type=int, help="training image size (640)")
    p.add_argument("--batch", type=_batch, help="batch size (16); -1 or 0.x lets Ultralytics pick by GPU memory")
    p.add_argument("--device", help="passed to Ultralytics: cpu, 0, 0,1 (DDP), mps ...")
    p.add_argument("--weights", help="start checkpoint: a path, an Ultralytics name (yolo11n.pt) or empty for the "
                   "bundled COCO YOLO11n")
    p.add_argument("--model", help="architecture name for --schedule scratch (yolo11n)")
    p.add_argument("--augment", help="augmentation preset: default, none, ct, xray")
    p.add_argument("--optimizer", help="SGD (default), AdamW or Adam; never 'auto' (it ignores lr0)")
    p.add_argument("--lr0", type=float, help="initial LR of the head/neck (0.01)")
    p.add_argument("--backbone-lr-mult", type=float, help="backbone LR = lr0 x this after the unfreeze (0.3)")
    p.add_argument("--rewarm-epochs", type=float, help="LR ramp for layers unfrozen mid-run, in epochs (1.0)")
    p.add_argument("--gradual-step", type=int, help="epochs between unfreeze steps of --schedule gradual")
    p.add_argument("--l2sp", type=float, metavar="ALPHA",
                   help="after each step pull transferred conv weights toward the start checkpoint by lr x ALPHA "
                   "of their distance (L2-SP; default 1.0 for two-stage, 0 = off)")
    p.add_argument("--warmup-epochs", type=float, help="Ultralytics warm-up epochs (3)")
    p.add_argument("--close-mosaic", type=int, help="turn mosaic off for the last N epochs (10)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (100)")
    p.add_argument("--workers", type=int, help="dataloader workers (8)")
    p.add_argument("--cache", type=_cache, help="cache images: ram, disk or false")
    p.add_argument("--nbs", type=int, help="nominal batch size: gradients accumulate until this many images (64); "
                   "set it to --batch on tiny datasets so every batch is an optimizer step")
    p.add_argument("--bn-calibrate", type=int, metavar="N",
                   help="re-estimate the start model's BatchNorm statistics on N training images first (0 = off)")


_TUNING_KEYS = ("unfreeze_at", "imgsz", "batch", "device", "weights", "model", "augment", "optimizer", "lr0",
                "backbone_lr_mult", "rewarm_epochs", "gradual_step", "warmup_epochs", "close_mosaic", "patience",
                "workers", "cache", "bn_calibrate", "nbs", "l2sp")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune YOLO11 with a staged freeze/unfreeze schedule (one Ultralytics run)",
        description="Transfer learning from COCO weights: head-only first, then the backbone unfrozen at a lower "
        "LR, inside one run (warm-up, EMA, optimizer and LR schedule stay continuous). Writes RUNDIR/weights/"
        "best.pt, RUNDIR/weights/<stage>.pt, RUNDIR/summary.json and a per-epoch mAP plot.",
    )
    p.add_argument("--data", help="data.yaml (from yolo-ft prepare); not needed with --resume")
    p.add_argument("--out", required=True, metavar="RUNDIR", help="run folder")
    p.add_argument("--schedule", help="two-stage (default), gradual, full, head, scratch")
    p.add_argument("--epochs", type=int, help="total epochs over all stages (30)")
    p.add_argument("--seed", type=int, help="random seed (0)")
    p.add_argument("--fraction", type=float, help="train on a seeded, stratified fraction of the train split (1.0)")
    _tuning_flags(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in RUNDIR at the right stage")
    p.add_argument("--overwrite", action="store_true", help="delete a non-empty RUNDIR first")
    p.set_defaults(func=_train)

    c = subparsers.add_parser(
        "compare",
        help="A/B schedules over seeds and train-data fractions with the same budget",
        description="Train every schedule x seed x fraction with identical settings and the same split; write "
        "compare.json, compare.md (mean ± std table) and compare.png in --out.",
    )
    c.add_argument("--data", required=True, help="data.yaml")
    c.add_argument("--out", required=True, help="output folder (re-running skips finished runs)")
    c.add_argument("--schedules", type=_csv(str), default=["full", "two-stage"], help="comma list (full,two-stage)")
    c.add_argument("--epochs", type=int, default=30, help="total epochs per run (30)")
    c.add_argument("--seeds", type=int, default=2, help="number of seeds, 0..K-1 (2)")
    c.add_argument("--fractions", type=_csv(float), default=[1.0], help="comma list of train fractions (1.0)")
    c.add_argument("--parallel", type=int, default=1, help="runs at once, as subprocesses (1)")
    c.add_argument("--collect-only", action="store_true", help="train nothing; tabulate the finished runs in --out")
    _tuning_flags(c)
    c.set_defaults(func=_compare)


def _tuning(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in _TUNING_KEYS if getattr(args, k, None) is not None}


def _train(args: argparse.Namespace) -> int:
    from yolo_ft.records import YoloFtError
    from yolo_ft.train.api import train

    if not args.resume and not args.data:
        raise YoloFtError("--data is required (unless --resume)")
    kw = _tuning(args)
    for k in ("schedule", "epochs", "seed", "fraction"):
        if getattr(args, k) is not None:
            kw[k] = getattr(args, k)
    s = train(args.data, args.out, config=args.config, resume=args.resume, overwrite=args.overwrite, **kw)
    pull = f" + L2-SP {s['l2sp']:g}" if s.get("l2sp") else ""
    print(f"schedule {s['schedule']}{pull}: " + " -> ".join(
        f"{st['name']} (epochs {st['epochs'][0]}-{st['epochs'][1]}, {st['trainable_params'] or 0:,} trainable)"
        for st in s["stages"]))
    m = s["metrics"]
    print(f"best epoch {s['best']['epoch']} ({s['best']['stage']}): mAP50 {m['mAP50']:.4f}  "
          f"mAP50-95 {m['mAP50-95']:.4f}  P {m['precision']:.4f}  R {m['recall']:.4f}")
    print(f"wrote {args.out}/weights/best.pt and {args.out}/summary.json")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from yolo_ft.train.compare import compare, markdown_table

    r = compare(args.data, args.out, schedules=args.schedules, epochs=args.epochs, seeds=args.seeds,
                fractions=args.fractions, config=args.config, parallel=args.parallel,
                collect_only=args.collect_only, **_tuning(args))
    print(markdown_table(r["table"]), end="")
    failed = [x["tag"] for x in r["runs"] if "error" in x]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (see {args.out}/logs/)")
    print(f"wrote {args.out}/compare.json, compare.md, compare.png ({r['wall_s']:.0f}s)")
    return 1 if failed else 0
