"""Time and memory of `yolo-ft review` on 1,000 samples: ingest, predict, evaluate, views, report, re-run.

The split is real kidney-stone CT images (and their labels) from ../shared/datasets, repeated by hard
links until it holds ``--n`` images, so every sample is a distinct file path. The model is a YOLO11n
fine-tuned for a few epochs from the COCO weights in ../shared/weights (or ``--model``). The FiftyOne
database is a fresh one in a temp dir. Peak RSS is this process's (MongoDB runs in its own process and
is reported separately from /proc).

    .venv/bin/python bench/bench_review.py [--n 1000] [--model best.pt] [--conf 0.05] [--imgsz 320]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_TMP = Path(tempfile.mkdtemp(prefix="bench-review-"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_TMP / "ultralytics"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(_TMP / "fiftyone-db"))
os.environ.setdefault("MPLBACKEND", "Agg")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mongod_rss_mb() -> float | None:
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            if cmd and cmd[0].endswith(b"mongod") and str(_TMP).encode() in b" ".join(cmd):
                for line in (p / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, IndexError):
            continue
    return None


def build_split(shared: Path, root: Path, n: int) -> Path:
    """``n`` hard-linked copies of the real validation images (labels copied alongside) + data.yaml."""
    src = shared / "datasets/kidney-stone-ct-yolo/datasets"
    real = sorted((src / "images/validation").iterdir())
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    for i in range(n):
        img = real[i % len(real)]
        name = f"r{i // len(real):03d}_{img.name}"
        os.link(img, root / "images/val" / name) if _same_fs(img, root) else shutil.copy2(img, root / "images/val" / name)
        shutil.copy2(src / "labels/validation" / (img.stem + ".txt"), root / "labels/val" / (Path(name).stem + ".txt"))
    y = root / "data.yaml"
    y.write_text(f"path: {root}\nval: images/val\nnames:\n  0: KIDNEY_STONE\n")
    return y


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def train_model(shared: Path, work: Path, imgsz: int, epochs: int) -> Path:
    """A small fine-tune of the COCO YOLO11n on 48 real training images (weak, but it finds stones)."""
    from yolo_ft.train.onnx_import import import_onnx_weights
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    src = shared / "datasets/kidney-stone-ct-yolo/datasets"
    ds = work / "train_ds"
    for split in ("train", "val"):
        (ds / "images" / split).mkdir(parents=True)
        (ds / "labels" / split).mkdir(parents=True)
    for img in sorted((src / "images/train").iterdir())[:48]:
        shutil.copy2(img, ds / "images/train" / img.name)
        shutil.copy2(src / "labels/train" / (img.stem + ".txt"), ds / "labels/train" / (img.stem + ".txt"))
    for img in sorted((src / "images/validation").iterdir())[:8]:
        shutil.copy2(img, ds / "images/val" / img.name)
        shutil.copy2(src / "labels/validation" / (img.stem + ".txt"), ds / "labels/val" / (img.stem + ".txt"))
    (ds / "data.yaml").write_text(f"path: {ds}\ntrain: images/train\nval: images/val\nnames:\n  0: KIDNEY_STONE\n")
    pre = import_onnx_weights(shared / "weights/yolo11n_int8.onnx", work / "coco11n.pt",
                              calib_images=[ds / "images/train"], imgsz=imgsz)
    YOLO(str(pre)).train(data=str(ds / "data.yaml"), epochs=epochs, imgsz=imgsz, batch=8, device="cpu", workers=0,
                         project=str(work), name="ft", exist_ok=True, plots=False, verbose=False, seed=0,
                         amp=False, val=False)
    return work / "ft/weights/last.pt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", help="a .pt or .onnx model (default: a quick fine-tune, not timed)")
    ap.add_argument("--conf", type=float, default=0.01)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--train-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shared = Path(args.shared)
    if args.train_only:  # run in a child so training memory does not count in the review's peak RSS
        print(train_model(shared, Path(args.train_only), args.imgsz, args.epochs))
        return 0

    if args.model:
        model = Path(args.model)
    else:
        import subprocess

        out = subprocess.run(
            [sys.executable, __file__, "--train-only", str(_TMP / "model"), "--imgsz", str(args.imgsz),
             "--epochs", str(args.epochs), "--shared", str(shared)],
            check=True, capture_output=True, text=True,
        ).stdout
        model = Path(out.strip().splitlines()[-1])
    data = build_split(shared, _TMP / "data", args.n)

    from yolo_ft.review import fiftyone as rfo
    from yolo_ft.review.predict import load_predictor, model_tag
    from yolo_ft.review.report import write_report
    from yolo_ft.review.views import mistakes_view, save_review_views
    from yolo_ft.review.yolo_data import load_data_yaml

    rows: list[tuple[str, float, float]] = []

    def phase(name, fn):
        t = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - t, peak_rss_mb()))
        return out

    yd = load_data_yaml(data)
    predictor = load_predictor(model, conf=args.conf, imgsz=args.imgsz if model.suffix == ".pt" else None)
    fields = rfo.ModelFields(model_tag(model))
    ds = phase("open db + dataset", lambda: rfo.open_dataset(yd, "val", "bench-review"))
    counts = phase("ingest (new)", lambda: rfo.ingest_split(ds, yd, "val", progress=False))
    n_pred = phase("predict + store", lambda: rfo.store_predictions(ds, predictor, fields, progress=False))
    results, summary = phase("evaluate (COCO + mAP)", lambda: rfo.evaluate(ds, fields, progress=False))
    phase("save 3 views", lambda: save_review_views(ds, fields))
    phase("HTML report (12 worst)", lambda: write_report(ds, mistakes_view(ds, fields), fields, results, summary,
                                                        _TMP / "report", worst_n=12))
    again = phase("ingest (re-run, in place)", lambda: rfo.ingest_split(ds, yd, "val", progress=False))
    assert again["added"] == 0 and len(ds) == args.n

    n = counts["samples"]
    print(f"\nyolo-ft review benchmark: {n} samples ({counts['gt_boxes']} GT boxes, {n_pred} predicted at conf "
          f"{args.conf}), model {model.name} imgsz {args.imgsz}, CPU threads {os.cpu_count()}")
    print(f"{'phase':28s} {'wall s':>8s} {'ms/sample':>10s} {'peak RSS MB':>12s}")
    for name, s, rss in rows:
        print(f"{name:28s} {s:8.2f} {1000 * s / n:10.2f} {rss:12.0f}")
    core = sum(s for name, s, _ in rows if name in ("ingest (new)", "predict + store", "evaluate (COCO + mAP)"))
    print(f"{'ingest + predict + evaluate':28s} {core:8.2f} {1000 * core / n:10.2f}")
    m = mongod_rss_mb()
    print(f"mongod peak RSS MB: {m:.0f}" if m else "mongod peak RSS: n/a")
    print(f"TP {summary.tp} FP {summary.fp} FN {summary.fn}  mAP@0.5 {summary.map50:.3f}")
    import fiftyone as fo

    fo.delete_dataset("bench-review")
    for sub in ("data", "model", "report"):  # the database dir stays until mongod has shut down
        shutil.rmtree(_TMP / sub, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
