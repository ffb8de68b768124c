"""One-shot GPU check of `yolo-ft export --target gpu` (run on a CUDA box; ~1-2 min per model).

    python bench/gpu_export.py [--model yolo_ft/assets/yolo11n_coco.pt] [--data DATA.yaml] [--imgsz 640]
                               [--runs 100] [--json OUT.json]

1. Can a process *without torch* load ONNX Runtime's CUDA provider (with and without ``ort.preload_dlls()``)?
2. Exports the checkpoint twice on the CPU, as a user would: ``--target gpu`` (fp16) and fp32, dynamic batch
   (each export runs its own CPU parity check).
3. Parity *on the GPU*: Ultralytics PyTorch predict on cuda:0 vs ``yolo_ft.runtime.Detector`` on the CUDA
   provider (fp16 and fp32), same images, same matching rules as the export check (fp16 tolerance for
   fp16). With ``--data``, the images are the val split and mAP50 of both sides is reported too.
4. Latency, median ms: bare ``session.run`` and the runtime (fp16/fp32, CUDA provider, batch 1 and 8),
   Ultralytics PyTorch predict on the GPU (fp32 and half), and fp32 on the CPU provider.
5. CUDA provider options (NHWC, cuDNN workspace), IO binding and CUDA graphs, bare runs, to explain fp16
   vs fp32 (launches, copies or math).

Needs onnxruntime-gpu (same major CUDA as torch) importable in place of onnxruntime; nothing is downloaded.
Exits 1 if the CUDA provider could not be used (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

CUDA = "CUDAExecutionProvider"
PROBE = """
import sys, onnxruntime as ort
if sys.argv[2] == "preload" and hasattr(ort, "preload_dlls"):
    ort.preload_dlls()
s = ort.InferenceSession(sys.argv[1], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print(s.get_providers()[0], "torch imported" if "torch" in sys.modules else "no torch")
"""


def _time(fn, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def _probe(model: Path, how: str) -> str:
    """Load the CUDA provider in a fresh process that never imports torch (as a deployed app would)."""
    r = subprocess.run([sys.executable, "-c", PROBE, str(model), how], capture_output=True, text=True, timeout=120)
    last = (r.stdout.strip().splitlines() or r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return f"rc {r.returncode}: {last[:300]}"


# CUDA provider options worth trying for a small conv net (why fp16 was not faster than fp32 on an H200):
# NHWC kernels for tensor cores, the largest cuDNN workspace; and IO binding (input and output stay on the
# GPU) to separate compute from the host<->device copies a plain ``run`` makes.
CUDA_OPTIONS = {"default": {}, "prefer_nhwc": {"prefer_nhwc": "1"},
                "max_workspace": {"cudnn_conv_use_max_workspace": "1"}}


def _cuda_option_sweep(tmp: Path, blob32, runs: int) -> dict:
    """Bare session.run, median ms, per precision x option set x batch; plus IO-bound runs."""
    import numpy as np
    import onnxruntime as ort

    res: dict = {}
    for prec in ("fp16", "fp32"):
        for opt_name, opts in CUDA_OPTIONS.items():
            try:
                s = ort.InferenceSession(str(tmp / f"{prec}.onnx"), providers=[(CUDA, opts), "CPUExecutionProvider"])
                inp, outn = s.get_inputs()[0].name, [s.get_outputs()[0].name]
                for b in (1, 8):
                    x = np.ascontiguousarray(np.repeat(blob32, b, axis=0))
                    res[f"{prec} {opt_name} b{b}"] = round(_time(lambda: s.run(outn, {inp: x}), runs), 3)
                    if opt_name == "default":  # the same, with input and output bound on the GPU
                        io = s.io_binding()
                        io.bind_ortvalue_input(inp, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
                        io.bind_output(outn[0], "cuda", 0)
                        res[f"{prec} iobinding b{b}"] = round(_time(lambda: s.run_with_iobinding(io), runs), 3)
            except Exception as e:  # one option a build lacks must not cost the other figures
                res[f"{prec} {opt_name}"] = f"failed: {str(e)[:200]}"
        # CUDA graphs: YOLO11n at batch 1 is a few hundred small kernels, so launch overhead may be what
        # keeps fp16 from beating fp32. Replaying one captured graph needs fixed shapes and bound buffers.
        cpu = ort.InferenceSession(str(tmp / f"{prec}.onnx"), providers=["CPUExecutionProvider"])
        for b in (1, 8):
            try:
                xb = np.ascontiguousarray(np.repeat(blob32, b, axis=0))
                out_shape = cpu.run(None, {cpu.get_inputs()[0].name: xb})[0].shape  # graph runs need IO binding
                s = ort.InferenceSession(str(tmp / f"{prec}.onnx"),
                                         providers=[(CUDA, {"enable_cuda_graph": "1"})])
                inp, outn = s.get_inputs()[0].name, s.get_outputs()[0].name
                x = ort.OrtValue.ortvalue_from_numpy(xb, "cuda", 0)
                y = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cuda", 0)
                io = s.io_binding()
                io.bind_ortvalue_input(inp, x)
                io.bind_ortvalue_output(outn, y)
                res[f"{prec} cuda_graph b{b}"] = round(_time(lambda: s.run_with_iobinding(io), runs), 3)
            except Exception as e:
                res[f"{prec} cuda_graph b{b}"] = f"failed: {str(e)[:200]}"
    print("CUDA provider options, bare run ms:", json.dumps(res, indent=1))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "yolo_ft/assets/yolo11n_coco.pt"))
    ap.add_argument("--data", help="data.yaml: parity and mAP50 on its val images (else bus.jpg, zidane.jpg)")
    ap.add_argument("--max-images", type=int, default=64)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--cpu-runs", type=int, default=20)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--device", default="0", help="torch device; 'cpu' with --provider CPUExecutionProvider dry-runs")
    ap.add_argument("--provider", default=CUDA)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort

    out: dict = {"onnxruntime": ort.__version__, "providers_available": ort.get_available_providers()}
    print(f"onnxruntime {ort.__version__}, providers available: {out['providers_available']}")

    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from yolo_ft.export import parity
    from yolo_ft.export.data import load_labelled, split_images
    from yolo_ft.export.metrics import map50
    from yolo_ft.export.onnx import CHECK_CONF, CHECK_IOU, _per_image_runtime, _per_image_torch, _spread, export
    from yolo_ft.runtime import Detector, letterbox, load_image, to_blob

    tmp = Path(tempfile.mkdtemp(prefix="gpu-export-"))
    if args.data:
        images = _spread(split_images(args.data, "val"), args.max_images)
    else:
        images = [ASSETS / "bus.jpg", ASSETS / "zidane.jpg"]
    check = [str(p) for p in images[:4]]
    t = time.time()
    r16 = export(args.model, tmp / "fp16.onnx", target="gpu", imgsz=args.imgsz, dynamic=True, check_images=check,
                 force=True)  # the CPU check is reported below, and judged again on the GPU
    out["export_fp16_s"] = round(time.time() - t, 1)
    r32 = export(args.model, tmp / "fp32.onnx", imgsz=args.imgsz, dynamic=True, check_images=check)
    out["export_cpu_parity"] = {"fp16": r16["parity"], "fp32": r32["parity"]}
    print(f"export --target gpu: {out['export_fp16_s']} s; CPU-provider parity fp16 passed={r16['parity']['passed']}, "
          f"fp32 passed={r32['parity']['passed']}")

    out["torch_free_probe"] = {how: _probe(tmp / "fp16.onnx", how) for how in ("plain", "preload")}
    print(f"CUDA provider in a torch-free process: {out['torch_free_probe']}")

    import torch

    # providers=None: CUDA when it loads, else CPU with a notice
    det16 = Detector(tmp / "fp16.onnx", providers=None if args.provider == CUDA else [args.provider])
    out["default_providers"] = det16.providers
    print(f"Detector(providers=None) -> {det16.providers}; torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}")
    if det16.providers[0] != args.provider:
        print("CUDA provider did not load; see the notice above. Nothing to time on the GPU.")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        return 1
    det32 = Detector(tmp / "fp32.onnx", providers=[args.provider])

    # -- parity on the GPU -------------------------------------------------------------------------
    torch_model = YOLO(args.model)
    originals = [load_image(p) for p in images]
    ref = _per_image_torch([torch_model.predict(im, imgsz=args.imgsz, rect=True, conf=CHECK_CONF, iou=CHECK_IOU,
                                                max_det=300, device=args.device, verbose=False)[0] for im in originals])
    gpu = {}
    for name, det in (("fp16", det16), ("fp32", det32)):
        cand = _per_image_runtime(det.predict(originals, conf=CHECK_CONF, iou=CHECK_IOU, max_det=300))
        res = parity.compare(ref, cand, parity.TOLERANCES[name], CHECK_CONF)
        res.pop("images", None)
        gpu[name] = res
        if args.data:
            truths = [(g.boxes, g.classes) for g in load_labelled(list(images))]
            gpu[name]["map50_onnx_cuda"] = round(map50(cand, truths), 5)
            gpu[name]["map50_torch_cuda"] = round(map50(ref, truths), 5)
        print(f"GPU parity {name} ({args.provider} vs PyTorch {args.device}, {len(images)} images): "
              + ", ".join(f"{k}={v}" for k, v in gpu[name].items() if not isinstance(v, (list, dict))))
    out["gpu_parity"] = gpu

    # -- latency -----------------------------------------------------------------------------------
    img = cv2_square(load_image(images[0]), args.imgsz)  # square input: runtime and bare run see one shape
    blob32 = to_blob([letterbox(img, (args.imgsz, args.imgsz))[0]])
    rows = []
    ep, dev = args.provider.replace("ExecutionProvider", " EP"), args.device  # labels say what was timed
    for name, det in (("fp16", det16), ("fp32", det32)):
        for b in (1, 8):
            x = np.ascontiguousarray(np.repeat(blob32, b, axis=0).astype(det.input_dtype))
            ms = _time(lambda: det.session.run(det.output_names, {det.input_name: x}), args.runs)
            rows.append((f"{name} {ep} bare session.run, batch {b}", ms, ms / b))
            batch = [img] * b
            ms = _time(lambda: det.predict(batch), args.runs)
            rows.append((f"{name} {ep} yolo_ft.runtime, batch {b}", ms, ms / b))
    for half in (False, True):
        ms = _time(lambda: torch_model.predict(img, imgsz=args.imgsz, device=args.device, half=half, verbose=False), args.runs)
        rows.append((f"Ultralytics PyTorch predict {dev} {'half' if half else 'fp32'}, batch 1", ms, ms))
    cpu = Detector(tmp / "fp32.onnx", providers=["CPUExecutionProvider"])
    ms = _time(lambda: cpu.session.run(cpu.output_names, {cpu.input_name: blob32}), args.cpu_runs, warmup=3)
    rows.append((f"fp32 CPU EP bare session.run, batch 1 ({os.cpu_count()} cores)", ms, ms))

    if args.provider == CUDA:
        out["cuda_options"] = _cuda_option_sweep(tmp, blob32, args.runs)

    name = Path(args.model).name
    print(f"\n{name} at {args.imgsz}x{args.imgsz}, median of {args.runs} runs")
    print(f"{'':60s} {'ms/call':>9s} {'ms/img':>9s}")
    for k, ms, per in rows:
        print(f"{k:60s} {ms:9.2f} {per:9.3f}")
    lat = {k: round(ms, 3) for k, ms, _ in rows}
    bare16, rt16 = lat[f"fp16 {ep} bare session.run, batch 1"], lat[f"fp16 {ep} yolo_ft.runtime, batch 1"]
    out["latency_ms"] = lat
    out["ratios"] = {
        "runtime_fp16_over_bare_b1": round(rt16 / bare16, 3),
        "torch_fp32_over_runtime_fp16_b1": round(lat[f"Ultralytics PyTorch predict {dev} fp32, batch 1"] / rt16, 2),
        "fp32_over_fp16_bare_b8": round(lat[f"fp32 {ep} bare session.run, batch 8"]
                                        / lat[f"fp16 {ep} bare session.run, batch 8"], 2),
        "cpu_fp32_over_cuda_fp16_bare_b1": round(rows[-1][1] / bare16, 1),
    }
    print("ratios:", out["ratios"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


def cv2_square(img, size: int):
    """A real image resized to size x size (timing input: no letterbox padding, same shape everywhere)."""
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


if __name__ == "__main__":
    raise SystemExit(main())
