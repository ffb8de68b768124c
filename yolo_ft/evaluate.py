"""``yolo-ft eval``: accuracy of a checkpoint or an exported ONNX model on one split of a dataset.

Both go through Ultralytics' validator (an ONNX model from ``yolo-ft export`` carries the metadata
Ultralytics needs), so a ``.pt`` and its ``.onnx`` are scored by exactly the same code and can be
compared number for number before deployment.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from yolo_ft.records import YoloFtError


def _onnx_imgsz(model: Path) -> int | None:
    """The size an exported model was made for (its metadata; a fixed-shape graph accepts nothing else)."""
    import onnx

    from yolo_ft.runtime.detector import _parse_meta

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    size = _parse_meta(meta.get("imgsz"))
    if isinstance(size, (list, tuple)) and size:
        size = max(int(v) for v in size)
    return int(size) if isinstance(size, int) else None


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    imgsz: int | None = None,
    batch: int = 1,
    conf: float = 0.001,
    iou: float = 0.7,
    device: str | None = None,
) -> dict[str, Any]:
    """mAP50, mAP50-95, precision, recall (all classes and per class) of ``model`` on ``split``."""
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    model, data = Path(model), Path(data)
    if not model.is_file():
        raise YoloFtError(f"{model}: model not found")
    if model.suffix not in (".pt", ".onnx"):
        raise YoloFtError(f"{model}: expected a .pt checkpoint or an .onnx model")
    if not data.is_file():
        raise YoloFtError(f"{data}: data.yaml not found")
    prepare_ultralytics()
    if model.suffix == ".pt":
        from yolo_ft.utils.untrusted import warn_untrusted_checkpoint

        warn_untrusted_checkpoint(model)
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="detect")
    if imgsz is None:
        imgsz = _onnx_imgsz(model) if model.suffix == ".onnx" else None
        imgsz = imgsz or int((getattr(yolo, "overrides", {}) or {}).get("imgsz") or 640)
    with tempfile.TemporaryDirectory(prefix="yolo-ft-eval-") as tmp:
        kwargs: dict[str, Any] = dict(
            data=str(data), split=split, imgsz=imgsz, batch=batch, conf=conf, iou=iou, plots=False,
            project=tmp, name="val", exist_ok=True, verbose=False, workers=0,
        )
        if device is not None:
            kwargs["device"] = device
        metrics = yolo.val(**kwargs)
    box = metrics.box
    names = metrics.names
    per_class = {names[int(c)]: round(float(ap50), 6) for c, ap50 in zip(box.ap_class_index, box.ap50)}
    return {
        "model": str(model),
        "data": str(data),
        "split": split,
        "imgsz": imgsz,
        "mAP50": float(box.map50),
        "mAP50-95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
        "per_class_ap50": per_class,
        "speed_ms": {k: round(float(v), 3) for k, v in metrics.speed.items()},
    }


def _cmd_eval(args: argparse.Namespace) -> int:
    result = evaluate(
        args.model, args.data, split=args.split, imgsz=args.imgsz, batch=args.batch, conf=args.conf,
        iou=args.iou, device=args.device,
    )
    text = json.dumps(result, indent=2)
    if args.out:
        from yolo_ft.utils.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="mAP, precision and recall of a .pt or .onnx model on a dataset split")
    p.add_argument("--model", required=True, help="best.pt or model.onnx")
    p.add_argument("--data", required=True, help="data.yaml (from yolo-ft prepare)")
    p.add_argument("--split", default="val", help="train, val or test (default val)")
    p.add_argument("--imgsz", type=int, default=None, help="default: the model's own training/export size")
    p.add_argument("--batch", type=int, default=1, help="batch size (fixed-batch ONNX models need 1)")
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold for mAP (0.001)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU (0.7)")
    p.add_argument("--device", default=None, help="cpu, 0, ...")
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    p.set_defaults(func=_cmd_eval)
