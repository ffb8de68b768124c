"""``yolo-ft review``: flags in, library call, short summary out (heavy imports happen inside ``run``)."""

from __future__ import annotations

import argparse

from yolo_ft.records import YoloFtError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "review",
        help="visual error review of a model in the FiftyOne App (TP/FP/FN, mAP, views, HTML report)",
        description=(
            "Load a YOLO split into FiftyOne with its ground truth, run a .pt or .onnx model, evaluate it "
            "COCO-style, save error views (mistakes with misses first, confident false positives, missed "
            "small objects) and serve the FiftyOne App until Ctrl-C."
        ),
    )
    p.add_argument("--data", help="data.yaml of a YOLO dataset (or its folder)")
    p.add_argument("--model", help="model to review: best.pt (Ultralytics) or model.onnx (yolo-ft runtime)")
    p.add_argument("--split", default="val", help="split to review (default: val)")
    p.add_argument("--name", help="FiftyOne dataset name (default: yolo-ft-<dataset folder>-<split>)")
    p.add_argument("--conf", type=float, default=0.25, help="prediction confidence threshold (default: 0.25)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a prediction to match ground truth (default: 0.5)")
    p.add_argument("--nms-iou", type=float, default=0.7, help="NMS IoU threshold (default: 0.7)")
    p.add_argument("--imgsz", type=int, help="inference size for .pt models (default: the training size)")
    p.add_argument("--high-conf", type=float, default=0.5, help="confidence above which an FP is 'high-confidence'")
    p.add_argument("--small-area", type=float, default=32 * 32, help="GT box area in px² below which it is 'small'")
    p.add_argument("--no-launch", action="store_true", help="build the dataset (and report) but do not start the App")
    p.add_argument("--port", type=int, default=5151, help="App port (default: 5151)")
    p.add_argument("--address", default="127.0.0.1", help="App address (default: 127.0.0.1, local only)")
    p.add_argument("--report", metavar="OUTDIR", help="also write a self-contained HTML report into OUTDIR")
    p.add_argument("--worst", type=int, default=12, help="number of worst samples in the report (default: 12)")
    p.add_argument("--list", action="store_true", help="list review datasets and exit")
    p.add_argument("--delete", metavar="NAME", help="delete a review dataset and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("fiftyone").propagate = False  # FiftyOne logs through its own handler: print once

    from yolo_ft.review import fiftyone as rfo

    if args.list:
        names = rfo.list_review_datasets()
        for n in names:
            print(n)
        if not names:
            print("no review datasets")
        return 0
    if args.delete:
        rfo.delete_review_dataset(args.delete)
        print(f"deleted {args.delete}")
        return 0
    if not args.data or not args.model:
        raise YoloFtError("review needs --data and --model (or --list / --delete NAME)")
    if not 0 <= args.conf <= 1 or not 0 < args.iou <= 1:
        raise YoloFtError("--conf must be in [0, 1] and --iou in (0, 1]")

    from yolo_ft.review.api import review

    result = review(
        args.data, args.model, split=args.split, name=args.name, conf=args.conf, iou=args.iou,
        nms_iou=args.nms_iou, imgsz=args.imgsz, launch=False, report=args.report, worst_n=args.worst,
        high_conf=args.high_conf, small_area=args.small_area,
    )
    s = result.summary
    print(f"dataset {result.dataset}: {result.samples} samples ({result.split}); predictions in {result.pred_field}")
    print(f"mAP@0.5 {s.map50:.4f}  mAP@0.5:0.95 {s.map50_95:.4f}  precision {s.precision:.4f}  recall {s.recall:.4f}")
    print(f"TP {s.tp}  FP {s.fp}  FN {s.fn}  (ground-truth boxes {s.gt_boxes}, predicted {s.pred_boxes})")
    print("views: " + ", ".join(result.views))
    if result.report:
        print(f"report: {result.report}")
    if not args.no_launch:
        from yolo_ft.review.app import serve_review

        serve_review(result.dataset, result.views[0], address=args.address, port=args.port)
        print("App stopped")
    return 0
