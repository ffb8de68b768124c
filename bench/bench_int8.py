"""int8 vs fp32 on this machine, with and without the int8 graph rewrites, side by side in one run.

Why a separate bench: the rewrites trade uint8 lookups for float work (yolo_ft/export/int8_rewrites.py),
and this VM alternates between a quiet phase and a phase where memory-bound float ops take ~1.7x as
long (a neighbour's bandwidth use). A ratio measured in one phase does not predict the other, so every
round times fp32 before and after the int8 models and files the round under the phase fp32 ran in.

    .venv/bin/python bench/bench_int8.py [--seconds 300] [--threads 2]

Models (YOLO11n COCO at 640, batch 1, calibrated on 32 kidney-stone CT images; only speed is measured):
  fp32                 the exported fp32 graph (what `yolo-ft export` writes, graph rewrites on)
  fp32, Ultralytics graph  `yolo-ft export --no-graph-rewrites`: the neck as Ultralytics exports it
  int8 fastest            what `yolo-ft export --int8` tries first (rewrites on)
  int8 fast               its first fallback: the head's last convs float
  int8 fastest, lookups   "fastest" with SiLU as QLinearSigmoid+QLinearMul everywhere (--int8-silu lookup;
                          what `auto` picks on a CPU without VNNI)
  int8 fastest, no rewr.  "fastest" with SiLU as QLinearSigmoid+QLinearMul everywhere, no padding
  int8 fastest, all QG    "fastest" with QuickGelu on every SiLU, however large the map
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--seconds", type=float, default=300, help="how long to keep taking rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet-below", type=float, default=None,
                    help="fp32 ms under which a round counts as quiet (default: 1.12 x the fastest round)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    import numpy as np
    import onnxruntime as ort
    from bench_runtime import _calib_yaml

    from yolo_ft.export.data import split_images
    from yolo_ft.export.onnx import export
    from yolo_ft.export.quantize import calibrate, quantize_int8

    ort.set_default_logger_severity(3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    fp32 = tmp / "fp32.onnx"
    export(Path(args.model), fp32, imgsz=640)
    export(Path(args.model), tmp / "fp32_plain.onnx", imgsz=640, graph_rewrites=False)
    imgs = split_images(_calib_yaml(tmp / "calib", Path(args.shared)), "train")
    cal = calibrate(fp32, tmp, imgs, (640, 640))
    (tmp / "plain").mkdir()
    plain = calibrate(fp32, tmp / "plain", imgs, (640, 640), pad=False)
    paths = {"fp32": fp32, "fp32, Ultralytics graph": tmp / "fp32_plain.onnx"}
    for name, scheme, c, limit in (("int8 fastest", "fastest", cal, "default"), ("int8 fast", "fast", cal, "default"),
                                   ("int8 fastest, lookups", "fastest", cal, 0),
                                   ("int8 fastest, no rewr.", "fastest", plain, 0),
                                   ("int8 fastest, all QG", "fastest", cal, None)):
        paths[name] = tmp / (name.replace(" ", "_").replace(",", "").replace(".", "") + ".onnx")
        kw = {} if limit == "default" else {"quickgelu_max_elements": limit}
        how = quantize_int8(fp32, paths[name], imgs, (640, 640), scheme=scheme, calibration=c, **kw)
        print(f"{name}: {how['silu_as_quickgelu']} SiLU as QuickGelu, padded {how['padded_convs']}")

    def session(p: Path) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])

    sessions = {k: session(p) for k, p in paths.items()}
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)

    def timed(s: ort.InferenceSession, n: int = 6) -> float:
        time.sleep(0.05)  # the previous session's pool threads stop spinning (they would steal a core)
        s.run(None, {"images": x})
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            s.run(None, {"images": x})
            ts.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ts)

    rounds = []  # (fp32 ms, {model: fp32/model})
    end = time.time() + args.seconds
    while time.time() < end:
        f1 = timed(sessions["fp32"])
        t = {k: timed(s) for k, s in sessions.items() if k != "fp32"}
        f2 = timed(sessions["fp32"])
        rounds.append(((f1 + f2) / 2, max(f1, f2) / min(f1, f2), {k: (f1 + f2) / 2 / v for k, v in t.items()}))
    fastest = min(r[0] for r in rounds)
    quiet_below = args.quiet_below or 1.12 * fastest
    phases = defaultdict(list)
    for f, spread, ratios in rounds:
        if spread > 1.1:
            phases["changed mid-round (dropped)"].append((f, ratios))
        else:
            phases["quiet" if f < quiet_below else "busy"].append((f, ratios))
    print(f"\nYOLO11n 640x640, batch 1, {args.threads} threads, onnxruntime {ort.__version__}: {len(rounds)} rounds "
          f"in {args.seconds:.0f} s; a round is 'quiet' when fp32 ran under {quiet_below:.1f} ms")
    names = [k for k in paths if k != "fp32"]
    print(f"{'phase':30s} {'rounds':>6s} {'fp32 ms':>8s} " + " ".join(f"{n:>23s}" for n in names))
    for phase in ("quiet", "busy", "changed mid-round (dropped)"):
        rs = phases.get(phase, [])
        if not rs:
            continue
        med = {n: statistics.median(r[n] for _, r in rs) for n in names}
        print(f"{phase:30s} {len(rs):6d} {statistics.median(f for f, _ in rs):8.1f} "
              + " ".join(f"{med[n]:22.3f}x" for n in names))
    print("(each cell: median over rounds of fp32 time / that model's time; int8 target >= 1.6)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
