"""``export``: best.pt -> model.onnx (fp32 for CPU, fp16 for the CUDA provider, or gated int8), checked
against PyTorch on real images, with provenance and check figures in ``model.onnx.json``.

Ultralytics' exporter writes the graph and the metadata ``YOLO("model.onnx")`` reads; it runs in a
temporary directory beside ``out`` (it writes next to its input checkpoint), and the finished files are
renamed into place only after every check passed — a refused export leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yolo_ft.utils.hashing import sha256_file
from yolo_ft.export import parity
from yolo_ft.export.fast_ops import fast_export_ops
from yolo_ft.export.graph_rewrites import split_into_producers, upsample_after_pointwise_conv
from yolo_ft.export.int8_rewrites import silu_plan
from yolo_ft.export.data import load_labelled, split_images
from yolo_ft.export.metrics import map50
from yolo_ft.records import YoloFtError
from yolo_ft.utils.atomic import atomic_write_json, recover_stale_temps

log = logging.getLogger(__name__)

CHECK_CONF = 0.001  # low threshold: many boxes to compare, as in Ultralytics' val
CHECK_IOU = 0.7


def _spread(items: Sequence[Path], n: int) -> list[Path]:
    """n items evenly spaced over a sorted list (deterministic, covers different image sizes)."""
    items = list(items)
    if len(items) <= n:
        return items
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _per_image_torch(results) -> list[parity.PerImage]:
    out = []
    for r in results:
        b = r.boxes
        out.append((b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(np.int64)))
    return out


def _per_image_runtime(dets) -> list[parity.PerImage]:
    return [(d.xyxy, d.confidence, d.class_id) for d in dets]


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import ultralytics

    from yolo_ft import __version__

    return {
        "yolo_ft": __version__,
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _set_metadata(onnx_path: Path, extra: dict[str, str], like: Path | None = None) -> None:
    """Copy Ultralytics' metadata from ``like`` (quantizers drop it) and add ours."""
    import onnx

    model = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    if like is not None:
        props = {p.key: p.value for p in onnx.load(str(like), load_external_data=False).metadata_props} | props
    props.update(extra)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(onnx_path))


def _rewrite_graph(onnx_path: Path, apply: bool = True) -> dict[str, list[str]]:
    """Apply the exact speed rewrites of graph_rewrites to the exported file (in this order: the Splits to push
    are the ones left after the upsample commute); per rewrite, the nodes rewritten (none when not ``apply``)."""
    import onnx

    rewrites = (upsample_after_pointwise_conv, split_into_producers)
    if not apply:
        return {r.__name__: [] for r in rewrites}
    model = onnx.load(str(onnx_path))
    done = {r.__name__: r(model) for r in rewrites}
    if any(done.values()):
        onnx.save(model, str(onnx_path))
    return done


def _check_images(calib: Path | None, images: Sequence[str | Path] | None, train_data: str | None) -> tuple[list[Path], str]:
    if images:
        paths = [Path(p) for p in images]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise YoloFtError(f"{missing[0]}: check image not found")
        return paths, "given images"
    for data in (calib, Path(train_data) if train_data else None):
        if data is not None and data.is_file():
            try:
                return split_images(data, "val"), f"{data} (val)"
            except YoloFtError:
                if data == calib:
                    raise
    from ultralytics.utils import ASSETS

    return sorted(ASSETS.glob("*.jpg")), "ultralytics bundled sample images (no dataset given)"


def export(
    model: str | Path,
    out: str | Path,
    *,
    target: str = "cpu",
    int8: bool = False,
    calib: str | Path | None = None,
    imgsz: int | None = None,
    dynamic: bool = False,
    batch: int = 1,
    tolerance: float = 0.01,
    force: bool = False,
    simplify: bool = True,
    graph_rewrites: bool = True,
    int8_silu: str = "auto",
    opset: int | None = None,
    check_images: Sequence[str | Path] | None = None,
    max_check_images: int = 8,
    max_calib_images: int = 100,
    max_gate_images: int = 200,
) -> dict[str, Any]:
    """Export ``model`` (.pt) to ``out`` (.onnx) and write ``out``.json; returns that report.

    Raises YoloFtError (and writes nothing) when the int8 gate or the parity check fails, unless ``force``.
    ``graph_rewrites``: apply graph_rewrites' exact speed rewrites (off: Ultralytics' graph as exported).
    ``int8_silu``: how int8 SiLUs run (``auto``: by the exporting CPU; see int8_rewrites.silu_plan).
    """
    t0 = time.time()
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise YoloFtError(f"{model}: checkpoint not found")
    if model.suffix != ".pt":
        raise YoloFtError(f"{model}: expected a PyTorch .pt checkpoint")
    if out.suffix != ".onnx":
        raise YoloFtError(f"{out}: output must end in .onnx")
    if target not in ("cpu", "gpu"):
        raise YoloFtError(f"target must be 'cpu' or 'gpu', not {target!r}")
    if int8 and target == "gpu":
        raise YoloFtError("--int8 is a CPU target (use --target cpu); the GPU target is fp16")
    calib = Path(calib) if calib else None
    try:  # checked before any work; the plan is the exporting CPU's (see int8_rewrites.silu_plan)
        quickgelu_limit, silu_why = silu_plan(int8_silu)
    except ValueError as e:
        raise YoloFtError(str(e)) from None
    if int8 and calib is None:
        raise YoloFtError("--int8 needs --calib DATA.yaml: calibration and the accuracy gate use its real images")
    if calib is not None and not calib.is_file():
        raise YoloFtError(f"{calib}: calibration data.yaml not found")
    if batch < 1:
        raise YoloFtError(f"batch must be >= 1, got {batch}")
    precision = "int8" if int8 else ("fp16" if target == "gpu" else "fp32")

    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    import onnxruntime as ort

    from yolo_ft.runtime import Detector, load_image
    from yolo_ft.runtime.detector import EXPORT_REPORT_KEY

    from yolo_ft.utils.untrusted import warn_untrusted_checkpoint

    warn_untrusted_checkpoint(model)
    torch_model = YOLO(str(model))
    if torch_model.task != "detect":
        raise YoloFtError(f"{model}: task '{torch_model.task}' is not supported (detection only)")
    train_args = (getattr(torch_model, "ckpt", None) or {}).get("train_args", {}) or {}
    imgsz = int(imgsz or train_args.get("imgsz") or 640)
    check_paths, check_source = _check_images(calib, check_images, train_args.get("data"))
    check_paths = _spread(check_paths, max_check_images)
    log.info("exporting %s -> %s (%s, imgsz %d)", model, out, precision, imgsz)

    out.parent.mkdir(parents=True, exist_ok=True)
    recover_stale_temps(out.absolute())  # what a killed earlier export left beside out
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.pid{os.getpid()}.", suffix=".partial", dir=out.parent) as td:
        tmp = Path(td)
        shutil.copy2(model, tmp / "model.pt")  # Ultralytics writes its output beside its input
        with fast_export_ops():
            exported = YOLO(str(tmp / "model.pt")).export(
                format="onnx",
                imgsz=imgsz,
                dynamic=dynamic,
                batch=batch,
                simplify=simplify,
                opset=opset,
                device="cpu",
                quantize=16 if precision == "fp16" else None,
                verbose=False,
            )
        fp32_path = Path(exported)
        rewritten = _rewrite_graph(fp32_path, apply=graph_rewrites)
        meta = {"yolo_ft_precision": precision, "yolo_ft_source_sha256": sha256_file(model)}
        report: dict[str, Any] = {
            "model": out.name,
            "precision": precision,
            "target": target,
            "source": {"checkpoint": str(model.resolve()), "sha256": meta["yolo_ft_source_sha256"],
                       "train_data": train_args.get("data"), "train_imgsz": train_args.get("imgsz"),
                       "train_epochs": train_args.get("epochs"),
                       "train_metrics": (getattr(torch_model, "ckpt", None) or {}).get("train_metrics")},
            "classes": {int(k): v for k, v in torch_model.names.items()},
            "imgsz": imgsz,
            "stride": int(max(torch_model.model.stride)),
            "settings": {"dynamic": dynamic, "batch": batch, "simplify": simplify, "opset": opset,
                         "int8": int8, "calib": str(calib) if calib else None, "tolerance": tolerance,
                         "force": force, "graph_rewrites": graph_rewrites, "int8_silu": int8_silu},
            "versions": _versions(),
            "graph_rewrites": rewritten,
        }
        final_path = fp32_path

        if int8:
            from yolo_ft.export.quantize import SCHEMES, calibrate, quantize_int8

            val = split_images(calib, "val")
            calib_imgs = _spread(split_images(calib, "train"), max_calib_images)
            gate_imgs = load_labelled(_spread(val, max_gate_images))
            truths = [(g.boxes, g.classes) for g in gate_imgs]

            def score(path: Path) -> float:
                det = Detector(path, providers=["CPUExecutionProvider"])
                preds = det.predict([g.image for g in gate_imgs], conf=CHECK_CONF, iou=CHECK_IOU)
                return map50(_per_image_runtime(preds), truths)

            fp32_map = score(fp32_path)
            cal = calibrate(fp32_path, tmp, calib_imgs, (imgsz, imgsz))  # once, for every scheme tried
            attempts = []
            for scheme in SCHEMES:  # fastest first; stop at the first that holds accuracy
                path = tmp / f"model_int8_{scheme}.onnx"
                how = quantize_int8(fp32_path, path, calib_imgs, (imgsz, imgsz), scheme=scheme, calibration=cal,
                                    quickgelu_max_elements=quickgelu_limit)
                how["silu"] = {"mode": int8_silu, "quickgelu_max_elements": quickgelu_limit, "why": silu_why}
                m = score(path)
                attempts.append({"scheme": scheme, "path": path, "how": how, "map50": m, "drop": fp32_map - m})
                if fp32_map - m <= tolerance:
                    break
            best = min(attempts, key=lambda a: a["drop"])
            int8_path, drop = best["path"], best["drop"]
            report["quantization"] = best["how"]
            _set_metadata(int8_path, meta | {"yolo_ft_int8_scheme": best["scheme"]}, like=fp32_path)
            report["int8_gate"] = {"dataset": str(calib), "split": "val", "images": len(gate_imgs),
                                   "map50_fp32": round(fp32_map, 5), "map50_int8": round(best["map50"], 5),
                                   "drop": round(drop, 5), "tolerance": tolerance, "scheme": best["scheme"],
                                   "attempts": [{"scheme": a["scheme"], "map50": round(a["map50"], 5),
                                                 "drop": round(a["drop"], 5)} for a in attempts],
                                   "passed": bool(drop <= tolerance), "forced": bool(force and drop > tolerance)}
            if drop > tolerance and not force:
                tried = ", ".join(f"{a['scheme']} {a['map50']:.4f}" for a in attempts)
                raise YoloFtError(
                    f"int8 export refused: mAP50 drops {drop:.4f} ({fp32_map:.4f} fp32 -> {best['map50']:.4f} "
                    f"int8; schemes tried: {tried}) on {len(gate_imgs)} val images of {calib}, more than the "
                    f"tolerance {tolerance}; nothing was written. Deploy the fp32 model, raise --tolerance, "
                    f"or pass --force to write it anyway."
                )
            final_path = int8_path

        # Parity: PyTorch (Ultralytics predict) vs our ONNX runtime, same letterbox: the full square for a
        # fixed-shape graph, the minimum rectangle for a dynamic one (what the runtime does for each).
        originals = [load_image(p) for p in check_paths]
        # One call per image: Ultralytics batches a list, and a batch of mixed shapes drops to the square.
        ref = _per_image_torch(
            [torch_model.predict(im, imgsz=imgsz, rect=dynamic, conf=CHECK_CONF, iou=CHECK_IOU, max_det=300,
                                 device="cpu", verbose=False)[0] for im in originals]
        )
        # Checked where it will run: the GPU target on the CUDA provider when this onnxruntime has it.
        providers = ["CPUExecutionProvider"]
        if target == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        det = Detector(final_path, providers=providers)
        cand = _per_image_runtime(det.predict(originals, conf=CHECK_CONF, iou=CHECK_IOU, max_det=300))
        check = {"images": [str(p) for p in check_paths], "image_source": check_source,
                 "provider": det.providers[0], "conf_threshold": CHECK_CONF, "iou_threshold": CHECK_IOU}
        if precision == "int8":
            check["agreement_iou50"] = round(parity.agreement(ref, cand, 0.5), 4)
            check["rule"] = "int8 is judged by the mAP50 gate; agreement is the share of PyTorch boxes found"
            check["passed"] = report["int8_gate"]["passed"]
        else:
            check |= parity.compare(ref, cand, parity.TOLERANCES[precision], CHECK_CONF)
            if check["matched_judged"] == 0:  # e.g. an under-trained model: no box reached the judged floor
                check["note"] = (f"none of the {check['boxes_reference']} boxes on the check images matched at "
                                 f"confidence >= {parity.TOLERANCES[precision].min_conf}: the check judged nothing")
                log.warning("%s parity check: %s; pass check images the model detects (--check-images)",
                            precision, check["note"])
            if not check["passed"] and not force:
                raise YoloFtError(
                    f"export refused: ONNX ({precision}) disagrees with PyTorch on {len(check_paths)} images "
                    f"({check['unmatched_reference']} + {check['unmatched_onnx']} unmatched boxes, max conf "
                    f"delta {check['max_conf_delta']}); nothing was written. Pass --force to write it anyway."
                )
        report["parity"] = check
        # Our metadata and the report go in once the check is done (metadata only: the checked graph is
        # unchanged), so provenance travels with model.onnx when the sidecar is left behind, and the model
        # file, written by one rename, is the authority. The sidecar is a readable copy.
        _set_metadata(final_path, meta | {EXPORT_REPORT_KEY: json.dumps(report, default=str)})
        report["size_bytes"] = final_path.stat().st_size
        # The exact file the sidecar describes: model and sidecar are two renames, so a reader can tell a
        # sidecar left over from an earlier export (a kill between the renames) by this hash.
        report["onnx_sha256"] = sha256_file(final_path)
        report["seconds"] = round(time.time() - t0, 1)
        os.replace(final_path, out)
    atomic_write_json(out.with_name(out.name + ".json"), report)
    log.info("wrote %s (%s) and %s", out, precision, out.name + ".json")
    return report
