"""A minimal deployment app: detect objects with an exported model using only onnxruntime, numpy and
OpenCV (no torch, no ultralytics).

    python app.py --model model.onnx photo.jpg more/photos/ [--conf 0.25] [--out detections.json]

It imports the detector from a copy of ``yolo_ft/runtime`` placed beside this file as ``runtime/``
(how you ship it), or, when run inside the yolo-ft repository, from ``yolo_ft.runtime``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

try:  # vendored: cp -r yolo_ft/runtime export/runtime
    sys.path.insert(0, str(HERE))
    from runtime import Detector  # type: ignore[import-not-found]
except ImportError:  # in the repository
    sys.path[0] = str(HERE.parent)
    from yolo_ft.runtime import Detector


def images_in(sources: list[str]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"error: {p}: no such file or directory")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Detect objects with an exported YOLO ONNX model.")
    ap.add_argument("--model", required=True, help="model.onnx written by `yolo-ft export`")
    ap.add_argument("sources", nargs="+", help="image files or folders")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--out", help="write all detections to this JSON file")
    args = ap.parse_args(argv)

    detector = Detector(args.model)
    print(f"model {args.model}: classes {detector.names}, input {detector.imgsz}, on {detector.providers[0]}",
          file=sys.stderr)
    rep = detector.export_report  # provenance embedded by `yolo-ft export`: worth a line in an app's log
    if rep:
        print(f"  {rep['precision']} export of checkpoint sha256 {rep['source']['sha256'][:12]}, "
              f"PyTorch parity {'passed' if rep['parity']['passed'] else 'FORCED'}", file=sys.stderr)
    results = []
    for path in images_in(args.sources):
        t = time.perf_counter()
        det = detector.predict(str(path), conf=args.conf, iou=args.iou)[0]
        ms = (time.perf_counter() - t) * 1e3
        results.append({"image": str(path), "detections": det.to_list()})
        found = ", ".join(f"{n} {c:.2f}" for n, c in zip(det.class_name, det.confidence)) or "nothing"
        print(f"{path.name}: {found} ({ms:.0f} ms)", file=sys.stderr)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
