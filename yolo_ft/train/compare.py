"""``compare()``: the transfer-learning A/B — several schedules x seeds x train-data fractions, same budget.

Every run gets the same settings except ``schedule`` and ``seed``; for a data fraction < 1, the TRAIN split
is subsampled once per (fraction, seed) with :func:`~yolo_ft.train.subsample.subsample_train` and that same
subset is used by every schedule (a paired comparison); validation is never touched. Each run's resolved
settings are written as a YAML config, so a run is reproducible alone with ``yolo-ft train --config``.

``parallel > 1`` runs that many ``yolo-ft train`` subprocesses at once (several small runs share one big
GPU far better than one run does: yolo11n at batch 16 leaves an H100 mostly idle). Finished runs (with a
summary.json) are skipped when ``compare`` is started again on the same folder, so an interrupted
comparison continues where it stopped.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from yolo_ft.records import YoloFtError
from yolo_ft.utils.atomic import atomic_write_json, atomic_write_text

METRICS = ("mAP50", "mAP50-95")


def _tag(fraction: float, schedule: str, seed: int) -> str:
    return f"f{fraction:g}_{schedule}_s{seed}"


def compare(
    data: str | Path,
    out: str | Path,
    *,
    schedules: Sequence[str] = ("full", "two-stage"),
    epochs: int = 30,
    seeds: int | Sequence[int] = 2,
    fractions: Sequence[float] = (1.0,),
    config: str | Path | None = None,
    parallel: int = 1,
    progress: bool = True,
    collect_only: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Run every (fraction, schedule, seed) and write compare.json, compare.md and compare.png into ``out``.

    ``collect_only`` trains nothing and tabulates the runs that have finished (after a time limit hit).
    """
    from yolo_ft.train.api import resolve_settings
    from yolo_ft.train.schedules import SCHEDULES
    from yolo_ft.train.subsample import subsample_train

    data = Path(data).resolve()
    if not data.is_file():
        raise YoloFtError(f"{data}: data.yaml not found")
    schedules = list(schedules)
    for s in schedules:
        if s not in SCHEDULES:
            raise YoloFtError(f"unknown schedule {s!r}; choose from {', '.join(SCHEDULES)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(x) for x in seeds]
    fractions = [float(f) for f in fractions]
    if not seed_list or not fractions or not schedules:
        raise YoloFtError("compare needs at least one schedule, seed and fraction")
    out = Path(out).resolve()
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    overrides.pop("fraction", None)

    jobs = []
    for frac, seed in itertools.product(fractions, seed_list):
        run_data = data if frac >= 1.0 else subsample_train(data, frac, seed, out / "subsets" / f"f{frac:g}_s{seed}")
        for sched in schedules:
            tag = _tag(frac, sched, seed)
            settings = resolve_settings(config, {**overrides, "schedule": sched, "epochs": epochs, "seed": seed,
                                                 "fraction": 1.0})
            cfg = out / "configs" / f"{tag}.yaml"
            atomic_write_text(cfg, yaml.safe_dump(_plain(settings), sort_keys=False))
            jobs.append({"tag": tag, "fraction": frac, "schedule": sched, "seed": seed, "data": str(run_data),
                         "config": str(cfg), "run_dir": str(out / "runs" / tag)})

    t0 = time.time()
    if not collect_only:
        _run_jobs(jobs, max(1, int(parallel)), out, progress)
    runs = []
    for j in jobs:
        summary_path = Path(j["run_dir"]) / "summary.json"
        rec = {k: j[k] for k in ("tag", "fraction", "schedule", "seed", "run_dir")}
        if summary_path.is_file():
            s = json.loads(summary_path.read_text())
            rec["metrics"] = s["metrics"]
            rec["best_epoch"] = s["best"]["epoch"]
            rec["l2sp"] = _run_l2sp(Path(j["run_dir"]), s)
        else:
            rec["error"] = j.get("error", "no summary.json (see logs/)")
        runs.append(rec)
    table = aggregate(runs, schedules, fractions)
    result = {"data": str(data), "epochs": epochs, "seeds": seed_list, "fractions": fractions, "schedules": schedules,
              "settings": _plain(resolve_settings(config, {**overrides, "epochs": epochs})),
              "runs": runs, "table": table, "wall_s": round(time.time() - t0, 1)}
    atomic_write_json(out / "compare.json", result)
    atomic_write_text(out / "compare.md", markdown_table(table))
    _plot(out / "compare.png", table, schedules, fractions)
    return result


def _run_l2sp(run_dir: Path, summary: dict[str, Any]) -> float:
    """The L2-SP alpha a finished run used: its summary's, else its plan's (runs from before summaries had it)."""
    if "l2sp" in summary:
        return float(summary["l2sp"])
    from yolo_ft.train.api import PLAN_FILE

    plan = run_dir / PLAN_FILE
    return float(json.loads(plan.read_text()).get("l2sp", 0.0)) if plan.is_file() else 0.0


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Settings as YAML-safe plain data (tuples -> lists)."""
    return json.loads(json.dumps(d, default=str))


def _run_jobs(jobs: list[dict], parallel: int, out: Path, progress: bool) -> None:
    todo = [j for j in jobs if not (Path(j["run_dir"]) / "summary.json").is_file()]
    todo.sort(key=lambda j: -j["fraction"])  # longest runs first, so the last wave is made of short ones
    if parallel == 1:
        from yolo_ft.train.api import train

        for n, j in enumerate(todo, 1):
            if progress:
                print(f"[{n}/{len(todo)}] {j['tag']}", flush=True)
            try:
                train(j["data"], j["run_dir"], config=j["config"], overwrite=True)
            except YoloFtError as e:
                j["error"] = str(e)
        return
    running: list[tuple[dict, subprocess.Popen, Any, float]] = []
    queue = list(todo)

    def _terminate(signum, frame):  # e.g. `timeout` sends SIGTERM: take the children down too
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        _loop(queue, running, parallel, out, progress, len(todo))
    finally:
        signal.signal(signal.SIGTERM, old)
        for j, proc, log, _ in running:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()


def _loop(queue: list[dict], running: list, parallel: int, out: Path, progress: bool, total: int) -> None:
    done = 0
    while queue or running:
        while queue and len(running) < parallel:
            j = queue.pop(0)
            log = open(out / "logs" / f"{j['tag']}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
            cmd = [sys.executable, "-m", "yolo_ft", "train", "--data", j["data"], "--out", j["run_dir"],
                   "--config", j["config"], "--overwrite"]
            running.append((j, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, time.time()))
        time.sleep(1.0)
        for item in list(running):
            j, proc, log, started = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            done += 1
            if proc.returncode != 0:
                j["error"] = f"exit {proc.returncode} (see logs/{j['tag']}.log)"
            if progress:
                print(f"[{done}/{total}] {j['tag']} {'ok' if proc.returncode == 0 else j['error']} "
                      f"({time.time() - started:.0f}s)", flush=True)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def aggregate(runs: list[dict], schedules: list[str], fractions: list[float]) -> list[dict[str, Any]]:
    """Mean ± sample std over seeds per (fraction, schedule), plus the paired difference to ``full``."""
    table = []
    for frac in fractions:
        base = {r["seed"]: r for r in runs if r["fraction"] == frac and r["schedule"] == "full" and "metrics" in r}
        for sched in schedules:
            rs = [r for r in runs if r["fraction"] == frac and r["schedule"] == sched and "metrics" in r]
            row: dict[str, Any] = {"fraction": frac, "schedule": sched, "n": len(rs),
                                   "l2sp": sorted({float(r.get("l2sp", 0.0)) for r in rs})}
            for m in METRICS:
                row[m], row[f"{m}_std"] = _mean_std([float(r["metrics"][m]) for r in rs if r["metrics"][m] is not None])
                diffs = [float(r["metrics"][m]) - float(base[r["seed"]]["metrics"][m]) for r in rs if r["seed"] in base]
                row[f"{m}_vs_full"] = _mean_std(diffs)[0] if base and sched != "full" else None
            table.append(row)
    return table


def _fmt(m: float | None, s: float | None) -> str:
    return "—" if m is None else f"{m:.3f} ± {s:.3f}"


def markdown_table(table: list[dict[str, Any]]) -> str:
    lines = ["| train fraction | schedule | L2-SP | mAP50 | mAP50-95 | Δ mAP50-95 vs full (paired) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        d = r.get("mAP50-95_vs_full")
        pull = ", ".join(f"{a:g}" for a in r.get("l2sp", [])) or "—"
        lines.append(f"| {r['fraction']:g} | {r['schedule']} | {pull} | {_fmt(r['mAP50'], r['mAP50_std'])} | "
                     f"{_fmt(r['mAP50-95'], r['mAP50-95_std'])} | {'—' if d is None else f'{d:+.3f}'} | {r['n']} |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, table: list[dict[str, Any]], schedules: list[str], fractions: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(1, len(schedules))
    for ax, metric in zip(axes, METRICS):
        for k, sched in enumerate(schedules):
            rows = [next((r for r in table if r["fraction"] == f and r["schedule"] == sched), None) for f in fractions]
            ys = [r[metric] if r and r[metric] is not None else 0.0 for r in rows]
            es = [r[f"{metric}_std"] if r and r[f"{metric}_std"] is not None else 0.0 for r in rows]
            ax.bar([i + k * width for i in range(len(fractions))], ys, width, yerr=es, capsize=3, label=sched)
        ax.set_xticks([i + width * (len(schedules) - 1) / 2 for i in range(len(fractions))])
        ax.set_xticklabels([f"{f:g}" for f in fractions])
        ax.set_xlabel("fraction of train split")
        ax.set_ylabel(f"val {metric} (mean ± std over seeds)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
