"""Training benchmarks (CPU-sized so they run anywhere; pass --device 0 --imgsz 640 on a GPU).

(a) wrapper overhead: ``yolo_ft.train.train(schedule="full")`` vs plain ``YOLO(ckpt).train()`` with identical
    Ultralytics arguments (explicit SGD, same lr0, seed, data). Target <= 2 %. Runs alternate and the median
    of the training-loop time (sum of per-epoch train+val seconds) and of wall time is reported.
(b) frozen-phase epoch time vs unfrozen, inside one two-stage run: the mean time of the training batches of
    head-only epochs divided by that of full epochs (validation excluded). Target <= 0.6x.

    .venv/bin/python bench/bench_train.py [--imgsz 160] [--epochs 3] [--repeats 3] [--images 96]
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
KIDNEY = REPO.parent / "shared" / "datasets" / "kidney-stone-ct-yolo" / "datasets"


def make_dataset(root: Path, n_train: int, n_val: int) -> Path:
    """Copy a deterministic slice of the real kidney-stone data (the shared copy is read-only)."""
    for split_src, split_dst, n in (("train", "train", n_train), ("validation", "val", n_val)):
        names = sorted(p.name for p in (KIDNEY / "images" / split_src).iterdir())[-n:]  # STONE* sort last
        for sub in ("images", "labels"):
            (root / sub / split_dst).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(KIDNEY / "images" / split_src / name, root / "images" / split_dst / name)
            lbl = KIDNEY / "labels" / split_src / (Path(name).stem + ".txt")
            shutil.copy2(lbl, root / "labels" / split_dst / lbl.name)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: KIDNEY_STONE\n")
    return data


def start_checkpoint(data: Path, out: Path, imgsz: int, device: str) -> Path:
    """A real Ultralytics checkpoint to fine-tune from: the bundled COCO one if built, else 1 epoch from yaml."""
    try:
        from yolo_ft.train.weights import bundled_weights

        return Path(bundled_weights())
    except Exception:
        pass
    from ultralytics import YOLO

    YOLO("yolo11n.yaml").train(data=str(data), epochs=1, imgsz=imgsz, batch=8, device=device, workers=0,
                               project=str(out), name="start", exist_ok=True, plots=False, verbose=False, amp=False)
    return out / "start" / "weights" / "last.pt"


class EpochTimer:
    """Callbacks timing each epoch's training batches only (on_train_epoch_start -> on_train_epoch_end)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.train_s: dict[int, float] = {}
        self.fit_s: dict[int, float] = {}
        self.fit_t0 = 0.0
        self.cpu_t0 = 0.0
        self.fit_cpu: dict[int, float] = {}

    def start(self, trainer) -> None:
        self.t0 = self.fit_t0 = time.perf_counter()
        self.cpu_t0 = time.process_time()

    def end(self, trainer) -> None:
        self.train_s[trainer.epoch] = time.perf_counter() - self.t0

    def fit_end(self, trainer) -> None:
        if trainer.epoch < trainer.epochs:  # final_eval re-fires on_fit_epoch_end with epoch+1: ignore it
            self.fit_s[trainer.epoch] = time.perf_counter() - self.fit_t0
            self.fit_cpu[trainer.epoch] = time.process_time() - self.cpu_t0

    def callbacks(self) -> dict:
        return {"on_train_epoch_start": [self.start], "on_train_epoch_end": [self.end], "on_fit_epoch_end": [self.fit_end]}


def common_args(a) -> dict:
    return dict(imgsz=a.imgsz, batch=a.batch, device=a.device, workers=a.workers, seed=0, amp=False, plots=False,
                optimizer="SGD", lr0=0.01, close_mosaic=0, warmup_epochs=1.0, val=True, cache=a.cache or False)


class HookClock:
    """Wall time spent inside yolo-ft's own trainer hooks and summary writing (the wrapper's whole added work)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def install(self) -> None:
        from yolo_ft.train import api, callbacks

        T = callbacks.StagedDetectionTrainer
        for owner, name in ((T, "_apply_stage"), (T, "build_optimizer"), (api, "write_summary")):
            self._wrap(owner, name)
        # the stage hook minus the Ultralytics model.train() it calls (plain Ultralytics does that too)
        base = callbacks.DetectionTrainer._model_train
        ours = T._model_train
        clock = self

        def timed_model_train(trainer):
            t = time.perf_counter()
            inner = [0.0]

            def super_timed(tr=trainer):
                t1 = time.perf_counter()
                base(tr)
                inner[0] += time.perf_counter() - t1

            callbacks.DetectionTrainer._model_train = lambda tr: super_timed(tr)
            try:
                ours(trainer)
            finally:
                callbacks.DetectionTrainer._model_train = base
            clock.seconds["_model_train"] = clock.seconds.get("_model_train", 0.0) + time.perf_counter() - t - inner[0]

        T._model_train = timed_model_train

    def _wrap(self, owner, name: str) -> None:
        fn = getattr(owner, name)
        clock = self

        def timed(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                clock.seconds[name] = clock.seconds.get(name, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)


def run_plain(data: Path, ckpt: Path, out: Path, a) -> tuple[float, float, list[float], list[float]]:
    from ultralytics import YOLO

    timer = EpochTimer()
    model = YOLO(str(ckpt))
    for ev, fns in timer.callbacks().items():
        for fn in fns:
            model.add_callback(ev, fn)
    t = time.perf_counter()
    model.train(data=str(data), epochs=a.epochs, save_dir=str(out), exist_ok=True, verbose=False, **common_args(a))
    return (time.perf_counter() - t, sum(timer.fit_s.values()), [timer.fit_s[e] for e in sorted(timer.fit_s) if e > 0],
            [timer.fit_cpu[e] for e in sorted(timer.fit_cpu) if e > 0])


def run_wrapped(data: Path, ckpt: Path, out: Path, a) -> tuple[float, float, list[float], list[float]]:
    from yolo_ft.train import train

    timer = EpochTimer()
    t = time.perf_counter()
    train(data, out, schedule="full", epochs=a.epochs, weights=str(ckpt), overwrite=True,
          callbacks=timer.callbacks(), **common_args(a))
    return (time.perf_counter() - t, sum(timer.fit_s.values()), [timer.fit_s[e] for e in sorted(timer.fit_s) if e > 0],
            [timer.fit_cpu[e] for e in sorted(timer.fit_cpu) if e > 0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=96, help="training images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", default="ram", help="ram (default: keeps JPEG decoding out of the timing), disk, ''")
    a = ap.parse_args()
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = make_dataset(tmp / "data", a.images, max(8, a.images // 4))
    ckpt = start_checkpoint(data, tmp, a.imgsz, a.device)

    # (a) overhead, alternating order to spread machine-load drift over both sides
    clock = HookClock()
    clock.install()
    plain, wrapped = [], []
    for r in range(a.repeats):
        order = (("plain", run_plain), ("yolo-ft", run_wrapped)) if r % 2 == 0 else (
            ("yolo-ft", run_wrapped), ("plain", run_plain))
        for name, fn in order:
            res = fn(data, ckpt, tmp / f"{name}-{r}", a)
            (plain if name == "plain" else wrapped).append(res)
            print(f"  repeat {r} {name:8s} wall {res[0]:7.2f}s  train+val loop {res[1]:7.2f}s", flush=True)
    pw, pl = statistics.median(x[0] for x in plain), statistics.median(x[1] for x in plain)
    ww, wl = statistics.median(x[0] for x in wrapped), statistics.median(x[1] for x in wrapped)
    pe = statistics.median(e for x in plain for e in x[2])
    we = statistics.median(e for x in wrapped for e in x[2])
    pc = statistics.median(e for x in plain for e in x[3])
    wc = statistics.median(e for x in wrapped for e in x[3])
    hooks = dict(clock.seconds)
    in_loop = sum(v for k, v in hooks.items() if k != "write_summary") / a.repeats

    # (b) frozen vs unfrozen epochs inside one two-stage run (epochs 2..: skip epoch 1's warm-up/cold caches)
    from yolo_ft.train import train

    epochs = max(8, 2 * a.epochs)
    k = epochs // 2  # frozen epochs 2..k and unfrozen k+1..: several samples of each, medians compared
    timer = EpochTimer()
    train(data, tmp / "two-stage", schedule="two-stage", epochs=epochs, unfreeze_at=k, weights=str(ckpt),
          overwrite=True, callbacks=timer.callbacks(), rewarm_epochs=0.0, **common_args(a))
    frozen = [timer.train_s[e] for e in range(1, k)]
    unfrozen = [timer.train_s[e] for e in range(k, epochs)]
    ratio = statistics.median(frozen) / statistics.median(unfrozen)

    import torch

    print(f"\nbench_train  device={a.device} imgsz={a.imgsz} batch={a.batch} train images={a.images} "
          f"epochs={a.epochs} repeats={a.repeats} cache={a.cache or False} torch threads={torch.get_num_threads()}")
    print("| measure | plain Ultralytics | yolo-ft | ratio |")
    print("|---|---|---|---|")
    print(f"| wall per run (median) | {pw:.2f}s | {ww:.2f}s | {ww / pw:.3f} |")
    print(f"| train+val loop (median) | {pl:.2f}s | {wl:.2f}s | {wl / pl:.3f} |")
    print(f"| epoch wall time, epochs 2.. (median) | {pe:.3f}s | {we:.3f}s | {we / pe:.3f} (target <= 1.02) |")
    print(f"| epoch CPU time of this process, epochs 2.. (median) | {pc:.3f}s | {wc:.3f}s | {wc / pc:.3f} "
          "(less sensitive to other load) |")
    print(f"| time inside yolo-ft hooks per run | — | {in_loop * 1000:.1f} ms | {in_loop / wl:.4f} of the loop |")
    print(f"| summary.json + plot per run | — | {hooks.get('write_summary', 0) / a.repeats:.2f}s | (fixed, after training) |")
    print(f"| train-batch time per epoch (median) | frozen {statistics.median(frozen):.2f}s | unfrozen "
          f"{statistics.median(unfrozen):.2f}s | {ratio:.3f} (target <= 0.6) |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
