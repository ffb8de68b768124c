"""One-shot GPU check (run on a CUDA box; ~1 min): `--target gpu` export of a checkpoint, then latency of
the fp16 model on the CUDA execution provider at batch 1 and 8 vs the fp32 model on the CPU provider.

    python bench/gpu_export.py [--model yolo_ft/assets/yolo11n_coco.pt] [--imgsz 640] [--runs 50]

Needs onnxruntime-gpu (same version as onnxruntime) in place of onnxruntime; nothing is downloaded. If the
wheels were installed with `pip install --target DIR`, run with PYTHONPATH=DIR. The export's parity check
runs on the CPU provider; the timings use CUDA (fp16, dynamic batch) and CPU (fp32) providers.
Prints a table and exits 1 if the CUDA provider could not be used (the reason is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def _time(fn, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--cpu-runs", type=int, default=10)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # use the CUDA/cuDNN libraries that ship with torch's wheels
        try:
            ort.preload_dlls()
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            print(f"note: ort.preload_dlls() failed: {e}")
    print(f"onnxruntime {ort.__version__}, providers available: {ort.get_available_providers()}")

    from ultralytics.utils import ASSETS

    from yolo_ft.export.onnx import export
    from yolo_ft.runtime import Detector, letterbox, load_image, to_blob

    tmp = Path(tempfile.mkdtemp(prefix="gpu-export-"))
    check = [str(ASSETS / "bus.jpg"), str(ASSETS / "zidane.jpg")]
    t = time.time()
    r16 = export(args.model, tmp / "model_fp16.onnx", target="gpu", imgsz=args.imgsz, dynamic=True, check_images=check)
    print(f"export --target gpu: {time.time() - t:.1f}s; parity on CPU EP: passed={r16['parity']['passed']}, "
          f"max conf delta {r16['parity']['max_conf_delta']}, min IoU {r16['parity']['min_matched_iou']}")
    r32 = export(args.model, tmp / "model_fp32.onnx", imgsz=args.imgsz, dynamic=True, check_images=check)

    img = load_image(ASSETS / "bus.jpg")
    one = to_blob([letterbox(img, (args.imgsz, args.imgsz))[0]])
    eight = np.ascontiguousarray(np.repeat(one, 8, axis=0))
    rows = []
    cuda_ok = "CUDAExecutionProvider" in ort.get_available_providers()
    if cuda_ok:
        s16 = ort.InferenceSession(str(tmp / "model_fp16.onnx"), providers=["CUDAExecutionProvider"])
        if s16.get_providers()[0] != "CUDAExecutionProvider":
            cuda_ok = False
            print(f"CUDA provider did not load (session providers: {s16.get_providers()})")
    if cuda_ok:
        name = s16.get_inputs()[0].name
        for b, x in ((1, one), (8, eight)):
            ms = _time(lambda: s16.run(None, {name: x}), args.runs)
            rows.append((f"fp16 CUDA EP session.run, batch {b}", ms, ms / b))
        det = Detector(tmp / "model_fp16.onnx", providers=["CUDAExecutionProvider"])
        ms = _time(lambda: det.predict(img), args.runs)
        rows.append(("fp16 CUDA EP yolo_ft.runtime, batch 1", ms, ms))
        ms = _time(lambda: det.predict([img] * 8), args.runs // 2)
        rows.append(("fp16 CUDA EP yolo_ft.runtime, batch 8", ms, ms / 8))
        d16 = det.predict(img, conf=0.25)[0]
        d32 = Detector(tmp / "model_fp32.onnx", providers=["CPUExecutionProvider"]).predict(img, conf=0.25)[0]
        print(f"bus.jpg: CUDA fp16 {len(d16)} boxes {d16.class_name}; CPU fp32 {len(d32)} boxes {d32.class_name}")
    s32 = ort.InferenceSession(str(tmp / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    name32 = s32.get_inputs()[0].name
    for b, x in ((1, one), (8, eight)):
        ms = _time(lambda: s32.run(None, {name32: x}), args.cpu_runs, warmup=2)
        rows.append((f"fp32 CPU EP session.run, batch {b} ({os.cpu_count()} cores)", ms, ms / b))

    print(f"\nYOLO11n-style model {Path(args.model).name} at {args.imgsz}, median ms")
    print(f"{'':52s} {'ms/call':>9s} {'ms/img':>9s}")
    for k, ms, per in rows:
        print(f"{k:52s} {ms:9.2f} {per:9.2f}")
    if not cuda_ok:
        print("CUDAExecutionProvider unavailable: install onnxruntime-gpu matching this CUDA; CPU rows only.")
        return 1
    cpu1 = next(ms for k, ms, _ in rows if k.startswith("fp32 CPU EP session.run, batch 1"))
    cuda1 = rows[0][1]
    print(f"CUDA fp16 vs CPU fp32 at batch 1: {cpu1 / cuda1:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
