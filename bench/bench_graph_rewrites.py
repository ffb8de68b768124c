"""What each exact graph rewrite of `yolo-ft export` buys on this CPU, side by side in one run.

YOLO11n at 640, batch 1, fp32, bare `InferenceSession.run`, ONNX Runtime's CPU provider:

  Ultralytics graph     `yolo-ft export --no-graph-rewrites`
  + upsample commute    `graph_rewrites.upsample_after_pointwise_conv` applied to it
  + Split pushed        both rewrites: what `yolo-ft export` writes

Timing is bench_runtime's A/B: adjacent pairs in alternating order, each timed call after a 50 ms pause
and an untimed call of the same session (ONNX Runtime's pool threads spin after a run; on 2 cores the
other session's spinning would slow whichever comes next, and a script without the pause measured the
first-created of two identical sessions ~20 % slower). A control pair runs one model against a copy of
itself: its ratio is the noise floor.

    .venv/bin/python bench/bench_graph_rewrites.py [--pairs 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    import numpy as np
    import onnx
    import onnxruntime as ort
    from bench_runtime import _ab

    from yolo_ft.export.graph_rewrites import upsample_after_pointwise_conv
    from yolo_ft.export.onnx import export

    ort.set_default_logger_severity(3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rewrites-"))
    plain, both = tmp / "ultralytics.onnx", tmp / "both.onnx"
    export(Path(args.model), plain, imgsz=640, graph_rewrites=False)
    export(Path(args.model), both, imgsz=640)
    m = onnx.load(str(plain))
    upsample_after_pointwise_conv(m)
    onnx.save(m, str(tmp / "upsample.onnx"))
    shutil.copy2(both, tmp / "both_copy.onnx")

    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)

    def runner(p: Path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        ref = s.run(None, {name: x})[0]
        return (lambda: s.run(None, {name: x})), ref

    models = {k: runner(tmp / f) for k, f in (("Ultralytics graph", "ultralytics.onnx"),
                                               ("+ upsample commute", "upsample.onnx"),
                                               ("+ Split pushed (export)", "both.onnx"),
                                               ("export, second copy", "both_copy.onnx"))}
    ref = models["Ultralytics graph"][1]
    for k, (_, out) in models.items():  # same numbers up to float summation order
        print(f"{k:26s} max |delta| vs Ultralytics graph: boxes {np.abs(out[:, :4] - ref[:, :4]).max():.1e} px, "
              f"scores {np.abs(out[:, 4:] - ref[:, 4:]).max():.1e}")
    print(f"\nYOLO11n 640x640 fp32, batch 1, {args.threads} threads, onnxruntime {ort.__version__}, "
          f"{args.pairs} A/B pairs each (ratio: median of per-pair ratios, > 1 = the second is faster)")
    for a, b in (("Ultralytics graph", "+ upsample commute"), ("+ upsample commute", "+ Split pushed (export)"),
                 ("Ultralytics graph", "+ Split pushed (export)"), ("+ Split pushed (export)", "export, second copy")):
        ta, tb, r = _ab(models[a][0], models[b][0], args.pairs)
        print(f"  {a:24s} {ta:6.1f} ms  vs  {b:24s} {tb:6.1f} ms : {r:.3f}x")
    print("(the last line is the control: one model against a copy of itself)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
