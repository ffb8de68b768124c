"""Load test: ``prepare`` at 1k / 5k / 20k images with flat memory, and ``review`` of 5,000 samples.

Sources are synthetic copies of the real kidney-stone CT images + labels. One pool of N unique
copies is written once (each copy gets 4 bytes after the JPEG end marker so the duplicate check
does not reject it; decoders never read them); the 1k/5k/20k sources are **hard links** into that
pool, so building them costs no extra disk. ``prepare`` hard-links its output images too.

Each run is a fresh subprocess so its peak RSS (``ru_maxrss``) is its own. "RSS growth" is the
peak minus the RSS right after the imports: flat memory means it grows far slower than the image
count (a few hundred bytes per image of records, never pixels).

Review runs ``yolo_ft.review.review(..., launch=False)`` (what ``yolo-ft review --no-launch`` calls)
on a 5,000-image split with the COCO YOLO11n bundled with yolo-ft at imgsz 160: its classes differ
from the data's, so its mAP means nothing here; this measures ingest + inference + evaluation +
views at scale, not accuracy.

    .venv/bin/python bench/bench_load.py                      # prepare 1k,5k,20k + review 5k
    .venv/bin/python bench/bench_load.py --sizes 1000 --review 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLO_FT_SHARED", REPO.parent / "shared"))
KIDNEY = SHARED / "datasets" / "kidney-stone-ct-yolo"

PREPARE_CHILD = r"""
import json, resource, sys, time
from yolo_ft.prepare.api import prepare
import yolo_ft.prepare.validate, yolo_ft.prepare.readers.yolo, PIL.Image, cv2, numpy
src, out = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = prepare(src, out)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "images": sum(r["images"].values()), "boxes": sum(r["boxes"].values()),
                  "linked": r["files"]["linked"], "problems": len(r["problems"]), "base_kb": base,
                  "peak_kb": peak, "timing": r["timing_s"]}))
"""

REVIEW_CHILD = r"""
import json, os, resource, sys, time
from yolo_ft.review.api import review
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = review(sys.argv[1], sys.argv[2], split="val", name="bench-load-review", imgsz=int(sys.argv[3]), launch=False,
           progress=False, batch=32)
dt = time.perf_counter() - t
s = r.summary
print(json.dumps({"seconds": dt, "samples": r.samples, "views": r.views, "gt_boxes": s.gt_boxes,
                  "pred_boxes": s.pred_boxes, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
import fiftyone as fo
fo.delete_dataset(r.dataset)
"""


def real_pairs() -> list[tuple[Path, Path]]:
    pairs = []
    for split in ("train", "validation"):
        for img in sorted((KIDNEY / "datasets/images" / split).iterdir()):
            pairs.append((img, KIDNEY / "datasets/labels" / split / (img.stem + ".txt")))
    return pairs


def build_pool(work: Path, n: int) -> list[tuple[Path, Path]]:
    """n unique image copies + labels in work/pool (written once, reused by every size)."""
    pool = work / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    pairs = real_pairs()
    out = []
    for i in range(n):
        img, lbl = pairs[i % len(pairs)]
        name = f"{i:06d}_{img.stem}"
        di, dl = pool / f"{name}.jpg", pool / f"{name}.txt"
        if not di.exists():
            di.write_bytes(img.read_bytes() + i.to_bytes(4, "little"))
            shutil.copyfile(lbl, dl)
        out.append((di, dl))
    return out


def link_source(work: Path, pool: list[tuple[Path, Path]], n: int, name: str, val_only: bool = False) -> Path:
    """A YOLO source of the first n pool items, hard-linked: images/{train,val} + labels + data.yaml."""
    src = work / name
    if (src / "data.yaml").exists():
        return src
    for i, (img, lbl) in enumerate(pool[:n]):
        s = "val" if val_only or i % 5 == 0 else "train"
        (src / "images" / s).mkdir(parents=True, exist_ok=True)
        (src / "labels" / s).mkdir(parents=True, exist_ok=True)
        os.link(img, src / "images" / s / img.name)
        os.link(lbl, src / "labels" / s / lbl.name)
    train = "images/val" if val_only else "images/train"
    (src / "data.yaml").write_text(f"path: {src}\ntrain: {train}\nval: images/val\nnames: {{0: KIDNEY_STONE}}\n")
    return src


def child(code: str, *args: str, env: dict | None = None) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, check=False,
                       env={**os.environ, **(env or {})})
    if r.returncode:
        raise SystemExit(f"child failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,5000,20000", help="prepare sizes (default 1000,5000,20000)")
    ap.add_argument("--review", type=int, default=5000, help="review this many samples (0: skip)")
    ap.add_argument("--review-imgsz", type=int, default=160)
    ap.add_argument("--workdir", help="keep the synthetic data here (default: a temp dir, removed after)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-load-"))
    rows = []
    review_row = None
    try:
        t = time.perf_counter()
        pool = build_pool(work, max(sizes + [args.review]))
        print(f"pool of {len(pool)} unique images built in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        for n in sizes:
            src = link_source(work, pool, n, f"src{n}")
            out = work / f"out{n}"
            shutil.rmtree(out, ignore_errors=True)
            r = child(PREPARE_CHILD, str(src), str(out))
            shutil.rmtree(out, ignore_errors=True)
            rows.append((n, r))
            print(f"  prepare {n:>6}: {r['seconds']:.1f}s, {r['images'] / r['seconds']:.0f} img/s, "
                  f"peak RSS {r['peak_kb'] / 1024:.0f} MB", file=sys.stderr)
        if args.review:
            src = link_source(work, pool, args.review, f"review{args.review}", val_only=True)
            from_repo = REPO / "yolo_ft" / "assets" / "yolo11n_coco.pt"
            env = {"FIFTYONE_DATABASE_DIR": str(work / "fo-db"), "FIFTYONE_DO_NOT_TRACK": "true",
                   "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(work / "ultralytics")}
            review_row = child(REVIEW_CHILD, str(src / "data.yaml"), str(from_repo), str(args.review_imgsz), env=env)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nprepare load test ({os.cpu_count()} CPUs; sources and outputs hard-linked; default options: "
          "decode + pHash near-duplicates)")
    print(f"{'images':>7} | {'seconds':>7} | {'img/s':>6} | {'boxes':>6} | {'problems':>8} | {'peak RSS MB':>11} | "
          f"{'RSS growth MB':>13} | {'growth B/img':>12}")
    print("-" * 92)
    for n, r in rows:
        growth = (r["peak_kb"] - r["base_kb"]) * 1024
        print(f"{r['images']:>7} | {r['seconds']:>7.1f} | {r['images'] / r['seconds']:>6.0f} | {r['boxes']:>6} | "
              f"{r['problems']:>8} | {r['peak_kb'] / 1024:>11.0f} | {growth / 2**20:>13.1f} | {growth / n:>12.0f}")
    if len(rows) > 1:
        (a, ra), (b, rb) = rows[0], rows[-1]
        ga, gb = ra["peak_kb"] - ra["base_kb"], rb["peak_kb"] - rb["base_kb"]
        print(f"\n{b // a}x the images: peak RSS x{rb['peak_kb'] / ra['peak_kb']:.2f}, RSS growth x{gb / max(ga, 1):.2f}, "
              f"throughput x{(rb['images'] / rb['seconds']) / (ra['images'] / ra['seconds']):.2f}")
    if review_row:
        r = review_row
        print(f"\nreview (--no-launch) of {r['samples']} samples: {r['seconds']:.0f}s "
              f"({r['samples'] / r['seconds']:.1f} samples/s), peak RSS {r['peak_kb'] / 1024:.0f} MB "
              f"(after imports {r['base_kb'] / 1024:.0f} MB); {r['gt_boxes']} GT boxes, {r['pred_boxes']} predictions; "
              f"views: {', '.join(r['views'])}")


if __name__ == "__main__":
    main()
