"""Side-by-side CPU latency of YOLO11n at 640, batch 1: Ultralytics PyTorch predict, Ultralytics ONNX
predict, bare onnxruntime ``session.run``, yolo_ft.runtime fp32 and int8.

Methods are timed round-robin in short blocks so a neighbour's load on a shared machine hits all of
them alike; medians and paired (same-round) ratios are reported.

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


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _ab(f1, f2, pairs: int) -> tuple[float, float, float]:
    """Adjacent A/B pairs (order alternating, so any carry-over hits both alike): median t1, t2, t1/t2.

    Each timed call follows an untimed call of the same method: ONNX Runtime's pool threads keep spinning
    for a moment after a run, and on 2 cores the other session's spinning threads would slow the first call.
    """

    def warm_then_time(f) -> float:
        time.sleep(0.05)  # the other session's pool threads stop spinning (on 2 cores they steal one)
        f()
        return _timed(f)

    t1, t2 = [], []
    for i in range(pairs):
        if i % 2:
            t2.append(warm_then_time(f2))
            t1.append(warm_then_time(f1))
        else:
            t1.append(warm_then_time(f1))
            t2.append(warm_then_time(f2))
    r = [a / b for a, b in zip(t1, t2)]
    return statistics.median(t1), statistics.median(t2), statistics.median(r)  # r: median of per-pair ratios


# The three targets: (label, method A, method B, number format, (comparison, bound)); "int8" = the
# scheme the exporter's gate kept. Each is measured as A / B.
_TARGETS = (
    ("runtime fp32 / bare ORT", "yolo_ft.runtime fp32", "bare ORT session.run fp32", ".3f", ("<=", 1.05)),
    ("PyTorch predict / runtime fp32", "Ultralytics PyTorch predict", "yolo_ft.runtime fp32", ".2f", (">=", 2.3)),
    ("runtime fp32 / runtime int8", "yolo_ft.runtime fp32", "int8", ".2f", (">=", 1.6)),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--runs", type=int, default=15, help="rounds")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--block", type=int, default=3, help="timed calls per method per round")
    ap.add_argument("--pairs", type=int, default=40, help="adjacent A/B pairs per target ratio")
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
    from yolo_ft.runtime import Detector, letterbox, letterbox_to_blob, to_blob

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

    # The schemes the gate falls back to, for the record.
    from yolo_ft.export.data import split_images
    from yolo_ft.export.quantize import SCHEMES, calibrate, quantize_int8

    fallback = {}
    calib_imgs = split_images(tmp / "calib" / "data.yaml", "train")
    cal = calibrate(fp32, tmp, calib_imgs, (640, 640))
    for scheme in SCHEMES:
        if scheme != r8["int8_gate"]["scheme"]:
            path = tmp / f"yolo11n_int8_{scheme}.onnx"
            quantize_int8(fp32, path, calib_imgs, (640, 640), scheme=scheme, calibration=cal)
            fallback[scheme] = Detector(path, providers=["CPUExecutionProvider"])

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
        **{f"yolo_ft.runtime int8 ({k})": (lambda d=d: d.predict(img)) for k, d in fallback.items()},
    }
    int8_key = f"yolo_ft.runtime int8 ({r8['int8_gate']['scheme']})"
    for f in methods.values():
        for _ in range(args.warmup):
            f()
    # Blocks, round-robin: per round each method runs 1 untimed + `--block` timed calls in a row. The untimed
    # call absorbs the switch: ONNX Runtime's thread pool keeps spinning for a moment after a run, and on 2
    # cores the previous session's spinning threads would otherwise slow whichever method comes next.
    times: dict[str, list[float]] = {k: [] for k in methods}
    order = list(methods.items())
    for r in range(args.runs):
        for k, f in order if r % 2 == 0 else order[::-1]:  # alternate direction: no method always follows another
            f()
            for _ in range(args.block):
                times[k].append(_timed(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    q = {k: (np.percentile(v, 25), np.percentile(v, 75)) for k, v in times.items()}
    base, pyt, rt32 = med["bare ORT session.run fp32"], med["Ultralytics PyTorch predict"], med["yolo_ft.runtime fp32"]
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine: "
          "medians drift with the neighbours' load; the min column is the least-disturbed run)")
    print(f"YOLO11n 640x640, batch 1, CPU ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"onnxruntime {ort.__version__}), median of {args.runs} rounds x {args.block} calls after {args.warmup} warm-up")
    # Paired ratios: each timed call against the bare session / PyTorch call of the same round and position
    # in the block, then the median. Load that drifts between rounds cancels out.
    tb, tp = np.array(times["bare ORT session.run fp32"]), np.array(times["Ultralytics PyTorch predict"])
    paired = {k: (float(np.median(np.array(v) / tb)), float(np.median(tp / np.array(v)))) for k, v in times.items()}
    print(f"{'method':32s} {'median':>8s} {'IQR':>15s} {'vs bare ORT':>12s} {'PyTorch / it':>13s} "
          f"{'min':>7s} {'paired vs ORT':>14s} {'paired PyTorch/it':>18s}")
    for k, v in med.items():
        lo, hi = q[k]
        b = best[k]
        print(f"{k:32s} {v:8.1f} {f'{lo:.1f}-{hi:.1f}':>15s} {v / base:11.3f}x {pyt / v:12.2f}x "
              f"{b:7.1f} {paired[k][0]:13.3f}x {paired[k][1]:17.2f}x")
    # The three target ratios again, each from adjacent A/B pairs: the most load-robust figure here.
    print(f"\nadjacent A/B pairs ({args.pairs} each, order alternating), ratio of medians:")
    ab = {}  # target -> (A/B ratio of medians, per-pair median)
    for label, ka, kb, fmt, _ in _TARGETS:
        a, b, r = _ab(methods[ka], methods[int8_key if kb == "int8" else kb], args.pairs)
        ab[label] = (a / b, r)
        print(f"  {label}: {a:.1f} ms / {b:.1f} ms = {a / b:{fmt}} (per-pair median {r:{fmt}})")
    d32 = det32.predict(img)[0]
    d8 = det8.predict(img)[0]
    # The runtime's own work, timed alone: what it adds on top of session.run.
    raw = bare.run(None, {name: blob})[0]

    slot = np.empty((3, 640, 640), np.float32)

    def pre() -> None:  # what Detector.predict does before session.run (into its reused input buffer)
        letterbox_to_blob(img, (640, 640), slot)

    def pre_two_step() -> None:  # the padded uint8 image, then the blob (to_blob): the runtime until session 8
        to_blob([letterbox(img, (640, 640))[0]], out=slot[None])

    def post() -> None:
        det32._postprocess(raw[0], (640, 640), img.shape[:2], img, 0.25, 0.7, 300)

    pre_ms = statistics.median([_timed(pre) for _ in range(200)])
    two_ms = statistics.median([_timed(pre_two_step) for _ in range(200)])
    post_ms = statistics.median([_timed(post) for _ in range(200)])
    print(f"pre-processing straight into the input buffer {pre_ms:.2f} ms; via the padded image {two_ms:.2f} ms "
          f"({two_ms / pre_ms:.2f}x)")
    print(f"runtime pre-processing {pre_ms:.2f} ms + post-processing {post_ms:.2f} ms = "
          f"{(pre_ms + post_ms) / best['bare ORT session.run fp32'] * 100:.1f}% of the fastest bare session.run")
    t32 = np.array(times["yolo_ft.runtime fp32"])
    table = {  # the round-robin table's view of the same ratios: (median ratio, paired ratio)
        _TARGETS[0][0]: (rt32 / base, paired["yolo_ft.runtime fp32"][0]),
        _TARGETS[1][0]: (pyt / rt32, paired["yolo_ft.runtime fp32"][1]),
        _TARGETS[2][0]: (rt32 / med[int8_key], float(np.median(t32 / np.array(times[int8_key])))),
    }
    print("\ntargets, judged on the adjacent A/B pairs (the round-robin table's rows run seconds to minutes apart "
          "while the load drifts; its median and paired ratios in brackets):")
    for label, _, _, fmt, (op, bound) in _TARGETS:
        ratio, per_pair = ab[label]
        met = ratio <= bound if op == "<=" else ratio >= bound
        print(f"  {label}: {ratio:{fmt}} (per-pair {per_pair:{fmt}}), target {op} {bound}: "
              f"{'met' if met else 'NOT met'}   [table: median {table[label][0]:{fmt}}, paired {table[label][1]:{fmt}}]")
    for k in fallback:
        key = f"yolo_ft.runtime int8 ({k})"
        print(f"  fallback scheme {k}: runtime fp32 / it median {rt32 / med[key]:.2f}x, "
              f"paired {float(np.median(t32 / np.array(times[key]))):.2f}x")
    print(f"detections on the crop: fp32 {len(d32)} {d32.class_name}, int8 {len(d8)} {d8.class_name}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
