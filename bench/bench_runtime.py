"""Side-by-side CPU latency of YOLO11n at 640, batch 1: Ultralytics PyTorch predict, Ultralytics ONNX
predict, bare onnxruntime ``session.run``, yolo_ft.runtime fp32 and int8.

Methods are timed round-robin (one call of each per round) so a neighbour's load on a shared machine
hits all of them alike; the median over the rounds is reported.

    .venv/bin/python bench/bench_runtime.py [--model yolo_ft/assets/yolo11n_coco.pt] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def _calib_yaml(tmp: Path, shared: Path) -> Path:
    """A small real data.yaml (kidney-stone CT) for int8 calibration; only latency is measured here."""
    src = shared / "datasets/kidney-stone-ct-yolo/datasets"
    for split, dst, n in (("train", "train", 32), ("validation", "val", 16)):
        names = sorted((src / "images" / split).iterdir())[:n]
        (tmp / "images" / dst).mkdir(parents=True, exist_ok=True)
        (tmp / "labels" / dst).mkdir(parents=True, exist_ok=True)
        for p in names:
            shutil.copy2(p, tmp / "images" / dst / p.name)
            shutil.copy2(src / "labels" / split / (p.stem + ".txt"), tmp / "labels" / dst / (p.stem + ".txt"))
    y = tmp / "data.yaml"
    y.write_text(f"path: {tmp}\ntrain: images/train\nval: images/val\nnames:\n  0: KIDNEY_STONE\n")
    return y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    import cv2
    import numpy as np
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from yolo_ft.export.onnx import export
    from yolo_ft.runtime import Detector, letterbox, to_blob

    tmp = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    pt = Path(args.model)
    real = pt.is_file()
    if not real:
        print(f"note: {pt} not found; using an untrained yolo11n.yaml model (same graph, same cost)")
        m = YOLO("yolo11n.yaml")
        pt = tmp / "yolo11n_random.pt"
        m.save(str(pt))
    bus = cv2.imread(str(ASSETS / "bus.jpg"))
    h, w = bus.shape[:2]
    img = np.ascontiguousarray(bus[(h - 640) // 2 : (h - 640) // 2 + 640, (w - 640) // 2 : (w - 640) // 2 + 640])
    check = [str(ASSETS / "bus.jpg"), str(ASSETS / "zidane.jpg")]

    t = time.time()
    fp32 = tmp / "yolo11n.onnx"
    r32 = export(pt, fp32, imgsz=640, check_images=check, force=not real)  # random weights: near-tied scores
    print(f"export fp32: {time.time() - t:.1f}s, parity passed={r32['parity']['passed']} "
          f"max conf delta {r32['parity']['max_conf_delta']}")
    t = time.time()
    i8 = tmp / "yolo11n_int8.onnx"
    r8 = export(pt, i8, imgsz=640, int8=True, calib=_calib_yaml(tmp / "calib", Path(args.shared)),
                check_images=check, force=True)
    print(f"export int8: {time.time() - t:.1f}s, gate (kidney CT val, COCO model: speed only) {r8['int8_gate']}")

    # The conservative scheme too (what the gate falls back to), for the record.
    from yolo_ft.export.data import split_images
    from yolo_ft.export.quantize import quantize_int8

    i8c = tmp / "yolo11n_int8_conv.onnx"
    quantize_int8(fp32, i8c, split_images(tmp / "calib" / "data.yaml", "train"), (640, 640), scheme="conv")
    det8c = Detector(i8c, providers=["CPUExecutionProvider"])

    torch_model = YOLO(str(pt))
    onnx_model = YOLO(str(fp32))
    bare = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    bare8 = ort.InferenceSession(str(i8), providers=["CPUExecutionProvider"])
    blob = to_blob([letterbox(img, (640, 640))[0]])
    name = bare.get_inputs()[0].name
    det32 = Detector(fp32, providers=["CPUExecutionProvider"])
    det8 = Detector(i8, providers=["CPUExecutionProvider"])

    methods = {
        "Ultralytics PyTorch predict": lambda: torch_model.predict(img, imgsz=640, device="cpu", verbose=False),
        "Ultralytics ONNX predict": lambda: onnx_model.predict(img, imgsz=640, device="cpu", verbose=False),
        "bare ORT session.run fp32": lambda: bare.run(None, {name: blob}),
        "yolo_ft.runtime fp32": lambda: det32.predict(img),
        "bare ORT session.run int8": lambda: bare8.run(None, {name: blob}),
        f"yolo_ft.runtime int8 ({r8['int8_gate']['scheme']})": lambda: det8.predict(img),
        "yolo_ft.runtime int8 (conv)": lambda: det8c.predict(img),
    }
    for f in methods.values():
        for _ in range(args.warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.runs):
        for k, f in methods.items():
            t = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    q = {k: (np.percentile(v, 25), np.percentile(v, 75)) for k, v in times.items()}
    base, pyt, rt32 = med["bare ORT session.run fp32"], med["Ultralytics PyTorch predict"], med["yolo_ft.runtime fp32"]
    print(f"\nYOLO11n 640x640, batch 1, CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"onnxruntime {ort.__version__}), median of {args.runs} round-robin runs after {args.warmup} warm-up")
    print(f"{'method':32s} {'ms/img':>8s} {'IQR':>15s} {'vs bare ORT':>12s} {'PyTorch / it':>13s}")
    for k, v in med.items():
        lo, hi = q[k]
        print(f"{k:32s} {v:8.1f} {f'{lo:.1f}-{hi:.1f}':>15s} {v / base:11.3f}x {pyt / v:12.2f}x")
    d32 = det32.predict(img)[0]
    d8 = det8.predict(img)[0]
    print(f"\nruntime fp32 / bare ORT: {rt32 / base:.3f} (target <= 1.05)")
    print(f"PyTorch predict / runtime fp32: {pyt / rt32:.2f}x (target >= 2.3)")
    int8_key = f"yolo_ft.runtime int8 ({r8['int8_gate']['scheme']})"
    print(f"runtime fp32 / runtime int8: {rt32 / med[int8_key]:.2f}x (target >= 1.6); "
          f"conv-only scheme {rt32 / med['yolo_ft.runtime int8 (conv)']:.2f}x")
    print(f"detections on the crop: fp32 {len(d32)} {d32.class_name}, int8 {len(d8)} {d8.class_name}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
