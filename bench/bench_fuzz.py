"""Long fuzz run of every reader + prepare (the CI tests run a small budget of the same generators).

For each format it generates ``--examples`` hostile sources with hypothesis
(tests/reliability/reliability_fuzz.py), checks the property (reader never raises and names the file
of every problem; prepare writes a valid dataset or a YoloFtError and nothing; nothing outside the
source root is read into the output; no data file runs code), and prints cases generated, crashes
(must be 0), how the cases ended and the time per case. With ``--save-crashes`` each crashing case
is stored in tests/reliability/corpus/<format>/crash_<n>/ so it is replayed as a regression test.
``--write-corpus`` rewrites the curated corpus cases; ``--kills N`` also runs the SIGKILL test of
``yolo-ft prepare`` with N kills; ``--train-kill`` SIGKILLs ``yolo-ft train`` right after its first
stage checkpoint and checks that ``--resume`` finishes the second stage.

    .venv/bin/python bench/bench_fuzz.py                       # 1000 cases per reader
    .venv/bin/python bench/bench_fuzz.py --examples 3000 --formats coco,voc --save-crashes
    .venv/bin/python bench/bench_fuzz.py --examples 0 --kills 60
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "reliability"))
os.environ.setdefault("YOLO_OFFLINE", "1")

import reliability_fuzz as rf  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

CORPUS = REPO / "tests" / "reliability" / "corpus"


def fuzz(fmt: str, examples: int, seed: int, save: bool) -> dict:
    stats: collections.Counter = collections.Counter()
    crashes: list[tuple[dict, dict, list[str]]] = []

    def on_case(files, options, result):
        stats["cases"] += 1
        stats["problems"] += len(result["problems"]) + len(result["prepare_problems"])
        end = result["outcome"].split("(")[0] or "reader-only"
        stats[f"ended: {end}"] += 1
        if result["failures"]:
            crashes.append((files, options, result["failures"]))

    body = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))(rf.run_strategy(fmt, on_case))
    from hypothesis import seed as hseed

    t = time.perf_counter()
    hseed(seed)(body)()
    stats["seconds"] = time.perf_counter() - t
    if save:
        for i, (files, options, failures) in enumerate(crashes):
            rf.save_case(CORPUS, fmt, f"crash_{seed}_{i}", files, options, note=failures[0][:500])
    for files, options, failures in crashes[:3]:
        print(f"  CRASH {fmt}: {failures[0][:1500]}\n    options={options} files={sorted(files)}", file=sys.stderr)
    return {"stats": stats, "crashes": len(crashes)}


def kill_train(work: Path) -> str:
    """SIGKILL `yolo-ft train` (two-stage, 4 epochs, imgsz 64) once the head stage's checkpoint exists,
    then `yolo-ft train --resume`: the run must finish in the second stage with all 4 epochs logged."""
    import json
    import shutil
    import signal

    kidney = Path(os.environ.get("YOLO_FT_SHARED", REPO.parent / "shared")) / "datasets" / "kidney-stone-ct-yolo"
    data = work / "data"
    for split, dst, n in (("train", "train", 24), ("validation", "val", 8)):
        imgs = sorted((kidney / "datasets/images" / split).iterdir())[:: 10][:n]
        for img in imgs:
            for kind, src in (("images", img), ("labels", kidney / "datasets/labels" / split / (img.stem + ".txt"))):
                (data / kind / dst).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, data / kind / dst / src.name)
    (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: {{0: KIDNEY_STONE}}\n")
    run = work / "run"
    cmd = [sys.executable, "-m", "yolo_ft", "train", "--data", str(data / "data.yaml"), "--out", str(run),
           "--epochs", "4", "--unfreeze-at", "2", "--imgsz", "64", "--batch", "8", "--device", "cpu", "--workers", "0"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.monotonic()
    while p.poll() is None and not (run / "weights" / "head.pt").exists() and time.monotonic() - t < 900:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_after = time.monotonic() - t
    if (run / "summary.json").exists():
        return "train finished before the kill"
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "train", "--resume", "--out", str(run)], cwd=REPO,
                       capture_output=True, text=True, check=False)
    if r.returncode:
        return f"resume FAILED ({r.returncode}): {r.stderr[-1500:]}"
    summary = json.loads((run / "summary.json").read_text())
    stages = [(s["name"], s["epochs"]) for s in summary["stages"]]
    epochs = [e["epoch"] for e in summary["per_epoch"]]
    ok = epochs == [1, 2, 3, 4] and [n for n, _ in stages] == ["head", "full"]
    return (f"{'OK' if ok else 'WRONG'}: killed {killed_after:.0f}s in (head.pt written), resumed; "
            f"epochs {epochs}, stages {stages}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=1000, help="cases per reader (default 1000)")
    ap.add_argument("--formats", default=",".join(rf.FORMATS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-crashes", action="store_true", help="store crashing cases in the corpus")
    ap.add_argument("--write-corpus", action="store_true", help="(re)write the curated corpus cases")
    ap.add_argument("--kills", type=int, default=0, help="also SIGKILL `yolo-ft prepare` this many times")
    ap.add_argument("--train-kill", action="store_true", help="also SIGKILL `yolo-ft train` mid-run and --resume")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.write_corpus:
        for fmt, name, files, opts, note, expect in rf.curated_cases():
            rf.save_case(CORPUS, fmt, name, files, opts, note, expect)
        print(f"curated corpus written to {CORPUS}")
    rows = []
    if args.examples:
        for fmt in args.formats.split(","):
            r = fuzz(fmt, args.examples, args.seed, args.save_crashes)
            rows.append((fmt, r))
            print(f"  {fmt}: {r['stats']['cases']} cases, {r['crashes']} crashes, {r['stats']['seconds']:.0f}s",
                  file=sys.stderr)
        print(f"\nfuzz run (seed {args.seed}, {args.examples} examples per reader)")
        print(f"{'format':<8} | {'cases':>6} | {'crashes':>7} | {'problems':>8} | {'ms/case':>7} | how cases ended")
        print("-" * 110)
        for fmt, r in rows:
            s = r["stats"]
            ends = ", ".join(f"{k[7:]} {v}" for k, v in sorted(s.items()) if k.startswith("ended: "))
            print(f"{fmt:<8} | {s['cases']:>6} | {r['crashes']:>7} | {s['problems']:>8} | "
                  f"{1000 * s['seconds'] / max(s['cases'], 1):>7.0f} | {ends}")
        total = sum(r["stats"]["cases"] for _, r in rows)
        crashes = sum(r["crashes"] for _, r in rows)
        print(f"{'total':<8} | {total:>6} | {crashes:>7} |")
    if args.kills:
        env = {**os.environ, "RELIABILITY_KILLS": str(args.kills)}
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/reliability/test_reliability_kill.py", "-k", "prepare"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=False)
        print(f"\nSIGKILL of yolo-ft prepare: {args.kills} kills, {'all survived' if r.returncode == 0 else 'FAILED'} "
              f"({time.perf_counter() - t:.0f}s)")
        if r.returncode:
            print(r.stdout[-3000:])
    if args.train_kill:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="train-kill-") as td:
            print(f"\nSIGKILL of yolo-ft train after the head stage, then --resume: {kill_train(Path(td))}")
    if rows and sum(r["crashes"] for _, r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
