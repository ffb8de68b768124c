"""``yolo-ft export`` and ``yolo-ft predict`` (argparse only at import time)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export best.pt to a checked ONNX model (fp32 CPU, fp16 GPU, gated int8)",
        description="Export a YOLO checkpoint to ONNX, check it against PyTorch on real images, and write "
        "model.onnx plus model.onnx.json (provenance and check figures).",
    )
    p.add_argument("--model", required=True, help="trained checkpoint (best.pt)")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="cpu: fp32; gpu: fp16 for CUDA")
    p.add_argument("--int8", action="store_true", help="static int8 quantization (CPU), gated on mAP50")
    p.add_argument("--calib", help="data.yaml: calibration (train) and gate/check (val) images")
    p.add_argument("--imgsz", type=int, help="input size (default: the checkpoint's training imgsz)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1)")
    p.add_argument("--tolerance", type=float, default=0.01, help="max mAP50 drop allowed for int8 (0.01)")
    p.add_argument("--force", action="store_true", help="write the model even if a check fails")
    p.add_argument("--no-simplify", dest="simplify", action="store_false", help="skip onnxslim")
    p.add_argument("--no-graph-rewrites", dest="graph_rewrites", action="store_false",
                   help="keep Ultralytics' graph as exported (skip the exact speed rewrites)")
    p.add_argument("--int8-silu", choices=("auto", "lookup", "quickgelu"), default="auto",
                   help="int8 SiLU as uint8 lookups or as float QuickGelu on small maps; auto: whichever ran "
                   "faster on CPUs like this one (lookups without VNNI)")
    p.add_argument("--check-images", nargs="+", help="images for the parity check (default: val split)")
    p.set_defaults(func=_export)

    q = subparsers.add_parser(
        "predict",
        help="run model.onnx (torch-free runtime) or best.pt on images",
        description="Detect objects in images, folders or globs; write JSON and optional annotated images.",
    )
    q.add_argument("--model", required=True, help="model.onnx (yolo_ft.runtime) or best.pt (Ultralytics)")
    q.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders or glob patterns")
    q.add_argument("--conf", type=float, default=0.25, help="confidence threshold (0.25)")
    q.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (0.7)")
    q.add_argument("--max-det", type=int, default=300, help="max detections per image (300)")
    q.add_argument("--out", help="write detections JSON here (default: print to stdout)")
    q.add_argument("--draw", metavar="DIR", help="write annotated images into DIR")
    q.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> int:
    from yolo_ft.export.onnx import export

    r = export(
        args.model, args.out, target=args.target, int8=args.int8, calib=args.calib, imgsz=args.imgsz,
        dynamic=args.dynamic, batch=args.batch, tolerance=args.tolerance, force=args.force,
        simplify=args.simplify, check_images=args.check_images, graph_rewrites=args.graph_rewrites,
        int8_silu=args.int8_silu,
    )
    par = r["parity"]
    print(f"wrote {args.out} ({r['precision']}, imgsz {r['imgsz']}, {r['size_bytes'] / 1e6:.1f} MB) and {args.out}.json")
    if "int8_gate" in r:
        g = r["int8_gate"]
        print(f"int8 gate: mAP50 {g['map50_fp32']:.4f} fp32 -> {g['map50_int8']:.4f} int8 "
              f"(drop {g['drop']:.4f}, tolerance {g['tolerance']}){' FORCED' if g['forced'] else ''}")
        print(f"int8 SiLU: {r['quantization']['silu']['why']}")
    else:
        floor = par["tolerance"].get("judged_from_conf", 0.0)
        judged = f" ({par['matched_judged']} at confidence >= {floor} judged)" if floor else ""
        print(f"parity vs PyTorch on {len(par['images'])} images: {par['matched']}/{par['boxes_reference']} boxes "
              f"matched{judged}, min IoU {par['min_matched_iou']}, max conf delta {par['max_conf_delta']}"
              f"{'' if par['passed'] else ' (FAILED, forced)'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import json

    from yolo_ft.export.predict import predict

    result = predict(args.model, args.sources, conf=args.conf, iou=args.iou, max_det=args.max_det,
                     out=args.out, draw_dir=args.draw)
    n = sum(len(r["detections"]) for r in result)
    if args.out:
        print(f"{len(result)} images, {n} detections -> {args.out}")
    else:
        print(json.dumps(result, indent=2))
    if args.draw:
        print(f"annotated images in {args.draw}")
    return 0
