"""``yolo-ft demo``: the whole pipeline on one dataset, as a user would chain the commands.

prepare → train (CPU-sized recipe) → export (ONNX, checked) → predict (torch-free runtime) → review report.
Each step calls the same library function as its own subcommand, so the demo exercises exactly what
users run; it only chooses paths and a small recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "datasets" / "kidney-stone-sample"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "cpu-demo.yaml"


def run_demo(
    out: Path,
    *,
    data: Path = DEFAULT_DATA,
    config: Path = DEFAULT_CONFIG,
    overwrite: bool = False,
    device: str | None = None,
    epochs: int | None = None,
) -> dict:
    """Run every stage into ``out`` and return a summary of what each produced."""
    from yolo_ft.export import export
    from yolo_ft.export.predict import predict
    from yolo_ft.prepare import prepare
    from yolo_ft.review import write_review_report
    from yolo_ft.train import train
    from yolo_ft.utils.atomic import atomic_write_json

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    report = prepare(data, out / "dataset", resplit=True, split=(0.7, 0.2, 0.1), seed=0, overwrite=True)
    timings["prepare_s"] = time.perf_counter() - t
    data_yaml = out / "dataset" / "data.yaml"

    t = time.perf_counter()
    overrides = {"device": device} if device else {}
    if epochs:
        overrides["epochs"] = epochs
    summary = train(data_yaml, out / "train", config=config, overwrite=True, **overrides)
    timings["train_s"] = time.perf_counter() - t
    best = out / "train" / "weights" / "best.pt"

    t = time.perf_counter()
    onnx_path = out / "model.onnx"
    export_info = export(best, onnx_path, target="cpu")
    timings["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    preds = predict(
        onnx_path, [str(out / "dataset" / "images" / "test")],
        out=out / "predictions.json", draw_dir=out / "predictions",
    )
    timings["predict_s"] = time.perf_counter() - t

    t = time.perf_counter()
    review = write_review_report(data_yaml, onnx_path, out / "review", split="val")
    timings["review_s"] = time.perf_counter() - t

    result = {
        "dataset": {"images": report["images"], "boxes": report["boxes"]},
        "train": {"schedule": summary.get("schedule"), "metrics": summary.get("metrics")},
        "export": {k: export_info.get(k) for k in ("target", "parity") if k in export_info},
        "predict": {"images": len(preds), "detections": sum(len(p["detections"]) for p in preds)},
        "review": review,
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "outputs": {
            "dataset": str(data_yaml),
            "model_pt": str(best),
            "model_onnx": str(onnx_path),
            "predictions": str(out / "predictions.json"),
            "predictions_drawn": str(out / "predictions"),
            "review_report": str(out / "review" / "index.html"),
        },
    }
    atomic_write_json(out / "demo.json", result)
    return result


def _cmd_demo(args: argparse.Namespace) -> int:
    result = run_demo(
        Path(args.out), data=Path(args.data), config=Path(args.config), overwrite=args.overwrite,
        device=args.device, epochs=args.epochs,
    )
    print(json.dumps(result, indent=2, default=str))
    print(f"\nDone. Open the review report: {result['outputs']['review_report']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run prepare → train → export → predict → review report on a dataset (default: bundled sample)",
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="labelled source data (any format prepare reads)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training recipe (YAML)")
    p.add_argument("--device", default=None, help="training device, e.g. cpu or 0")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's total epochs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_demo)
