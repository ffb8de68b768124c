"""``yolo-ft weights import|which``: rebuild a checkpoint from ONNX, show which checkpoint a spec means.

Imports only argparse/stdlib at module import time; the library loads when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="pretrained weights: import from ONNX, resolve a name offline")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    imp = sub.add_parser(
        "import",
        help="rebuild a trainable Ultralytics .pt from an exported (int8 or float) YOLO11 ONNX model",
        description="Dequantize the ONNX weights, map them onto yolo11{n,s,m,l,x}.yaml, re-create BatchNorm "
        "with statistics measured on real images (eval output unchanged), and save an Ultralytics checkpoint.",
    )
    imp.add_argument("model", type=Path, help="exported model .onnx")
    imp.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    imp.add_argument(
        "--calib",
        nargs="+",
        metavar="IMG_OR_DIR",
        help="real images (files or folders) for BatchNorm statistics; best: images like your training set "
        "(default: Ultralytics' bus.jpg and zidane.jpg)",
    )
    imp.add_argument("--imgsz", type=int, default=640, help="calibration image size (default 640, the training size)")
    imp.add_argument("--fp32", action="store_true", help="store float32 instead of Ultralytics' usual float16")
    imp.add_argument("--no-verify", action="store_true", help="skip the comparison against onnxruntime")
    imp.set_defaults(func=_cmd_import)

    which = sub.add_parser("which", help="print the checkpoint file a --weights value resolves to (offline first)")
    which.add_argument("spec", nargs="?", default=None, help="path or name like yolo11n.pt (default: bundled)")
    which.add_argument("--weights-dir", type=Path, default=None, help="folder to look in first")
    which.set_defaults(func=_cmd_which)


def _cmd_import(args: argparse.Namespace) -> int:
    from yolo_ft.records import YoloFtError
    from yolo_ft.train.bn_calibration import expand_image_paths
    from yolo_ft.train.onnx_import import compare_with_onnx, default_calibration_images, import_onnx_weights

    if args.out.suffix != ".pt":
        raise YoloFtError(f"--out must be a .pt file, got {args.out}")
    calib = expand_image_paths(args.calib) if args.calib else default_calibration_images()
    out = import_onnx_weights(args.model, args.out, calib_images=calib, imgsz=args.imgsz, half=not args.fp32)
    print(f"wrote {out} (BatchNorm calibrated on {len(calib)} images)")
    if not args.no_verify:
        from ultralytics import YOLO

        model = YOLO(str(out)).model
        deq = compare_with_onnx(model, args.model, calib[:4], dequantize=True)
        raw = compare_with_onnx(model, args.model, calib[:4])
        print(
            f"vs onnxruntime on {len(calib[:4])} calibration images (input {deq['imgsz']} px), at anchors scoring >= 0.25: "
            f"dequantized graph: box max |d| {deq['conf_box_max_abs_px']:.3f} px, score max |d| {deq['conf_score_max_abs']:.1e}, "
            f"rel L2 {deq['rel_l2']:.1e}; original int8 graph (activations quantized at run time): "
            f"box max |d| {raw['conf_box_max_abs_px']:.2f} px, score max |d| {raw['conf_score_max_abs']:.3f}, rel L2 {raw['rel_l2']:.3f}"
        )
    return 0


def _cmd_which(args: argparse.Namespace) -> int:
    from yolo_ft.train.weights import resolve_weights

    print(resolve_weights(args.spec, weights_dir=args.weights_dir))
    return 0
