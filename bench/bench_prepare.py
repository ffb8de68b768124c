"""Benchmark ``prepare``: images/s and peak memory at 1k and 10k images.

Synthetic sources are copies of the real kidney-stone CT images and labels (each copy made
unique by a few padding bytes after the JPEG end marker, so the duplicate check does not reject
it; the decoder never reads them). Output images are hard-linked (same filesystem), so the time measured
is label conversion + validation + splitting, not image copying.

Each configuration runs in a fresh subprocess: peak RSS (ru_maxrss) minus the RSS after imports,
and, in a second run, the tracemalloc peak of Python allocations — both should stay flat-ish in
the number of images (a few hundred bytes per image for the record, no pixels kept).

    .venv/bin/python bench/bench_prepare.py            # 1k and 10k
    .venv/bin/python bench/bench_prepare.py --sizes 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIDNEY = Path(os.environ.get("YOLO_FT_SHARED", REPO.parent / "shared")) / "datasets" / "kidney-stone-ct-yolo"

CONFIGS = {
    "default (decode + pHash)": {},
    "no near-dup (decode only)": {"near_dup": False},
    "labels only (header, no decode)": {"near_dup": False, "verify_images": False},
}

CHILD = r"""
import json, resource, sys, time, tracemalloc
from yolo_ft.prepare.api import prepare
import yolo_ft.prepare.validate, yolo_ft.prepare.readers.yolo, PIL.Image, cv2, numpy  # imports before baseline
src, out, opts, trace = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ru0 = resource.getrusage(resource.RUSAGE_SELF)
if trace:
    tracemalloc.start()
t = time.perf_counter()
r = prepare(src, out, **opts)
dt = time.perf_counter() - t
peak_py = tracemalloc.get_traced_memory()[1] if trace else None
ru1 = resource.getrusage(resource.RUSAGE_SELF)
rss = ru1.ru_maxrss
cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "images": sum(r["images"].values()), "linked": r["files"]["linked"],
                  "rss_growth_kb": rss - base, "py_peak": peak_py, "timing": r["timing_s"]}))
"""


def build_source(root: Path, n: int) -> Path:
    """n unique real images (+ labels) split 80/20 into images/{train,val}, with a data.yaml."""
    src = root / f"src{n}"
    if (src / "data.yaml").exists():
        return src
    pairs = []
    for split in ("train", "validation"):
        for img in sorted((KIDNEY / "datasets/images" / split).iterdir()):
            pairs.append((img, KIDNEY / "datasets/labels" / split / (img.stem + ".txt")))
    for s in ("train", "val"):
        (src / "images" / s).mkdir(parents=True, exist_ok=True)
        (src / "labels" / s).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, lbl = pairs[i % len(pairs)]
        s = "train" if i % 5 else "val"
        name = f"{i:06d}_{img.stem}"
        # copy k of a base image gets k+1 padding bytes after the end marker: unique content, and sizes
        # that differ like real files' do (the header-only mode hashes only files whose sizes collide)
        (src / "images" / s / f"{name}.jpg").write_bytes(img.read_bytes() + b"\0" * (i // len(pairs) + 1))
        shutil.copyfile(lbl, src / "labels" / s / f"{name}.txt")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: KIDNEY_STONE}\n")
    return src


def run(src: Path, out: Path, opts: dict, trace: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), json.dumps(opts), "1" if trace else "0"],
                       capture_output=True, text=True, cwd=REPO, check=False)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--workdir", help="where to build the synthetic sources (default: a temp dir, removed after)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    rows = []
    try:
        for n in sizes:
            src = build_source(work, n)
            for name, opts in CONFIGS.items():
                t = run(src, work / "out", opts, trace=False)
                m = run(src, work / "out", opts, trace=True)
                rows.append((n, name, t, m))
                print(f"  {n:>6} {name:<33} {t['images'] / t['seconds']:8.0f} img/s", file=sys.stderr)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\nprepare benchmark ({os.cpu_count()} CPUs, load average {load:.1f}; output images hard-linked; "
          f"work dir {work})")
    print("img/CPU-s = images per second of CPU time used (all threads): less sensitive to other load")
    print(f"{'images':>7} | {'configuration':<33} | {'img/s':>7} | {'img/CPU-s':>9} | {'seconds':>7} | {'linked':>6} | "
          f"{'RSS growth MB':>13} | {'py peak MB':>10} | {'py B/img':>8}")
    print("-" * 124)
    for n, name, t, m in rows:
        print(f"{n:>7} | {name:<33} | {t['images'] / t['seconds']:>7.0f} | {t['images'] / t['cpu_seconds']:>9.0f} | "
              f"{t['seconds']:>7.2f} | {t['linked']:>6} | "
              f"{t['rss_growth_kb'] / 1024:>13.1f} | {m['py_peak'] / 2**20:>10.1f} | {m['py_peak'] / n:>8.0f}")
    if len(sizes) > 1:
        print("\nratios (largest / smallest size), same configuration:")
        for name in CONFIGS:
            a = next(r for r in rows if r[0] == sizes[0] and r[1] == name)
            b = next(r for r in rows if r[0] == sizes[-1] and r[1] == name)
            print(f"  {name:<33} throughput x{(b[2]['images'] / b[2]['seconds']) / (a[2]['images'] / a[2]['seconds']):.2f}"
                  f"   py peak x{b[3]['py_peak'] / a[3]['py_peak']:.1f} for x{sizes[-1] / sizes[0]:.0f} images")


if __name__ == "__main__":
    main()
