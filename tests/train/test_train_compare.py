"""compare: same budget and split per schedule, paired subsets by seed, mean ± std table, parallel runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml


def test_compare_parallel_paired_subsets_and_table(tiny_yolo_dataset, start_ckpt, tmp_path):
    from yolo_ft.train import compare

    out = tmp_path / "cmp"
    kw = dict(schedules=["full", "two-stage"], epochs=2, seeds=2, fractions=[0.5], parallel=2, progress=False,
              weights=str(start_ckpt), imgsz=64, batch=8, device="cpu", workers=0, unfreeze_at=1)
    r = compare(tiny_yolo_dataset, out, **kw)
    assert [x.get("error") for x in r["runs"]] == [None] * 4
    # the same seeded subset for both schedules of a seed, a different one for the other seed
    lists = {}
    for run in r["runs"]:
        s = json.loads((Path(run["run_dir"]) / "summary.json").read_text())
        train_txt = Path(yaml.safe_load(Path(s["data_used"]).read_text())["train"])
        lists.setdefault(run["seed"], set()).add(train_txt.read_text())
        assert s["epochs"] == 2 and s["imgsz"] == 64 and s["seed"] == run["seed"]
        args = yaml.safe_load((Path(run["run_dir"]) / "args.yaml").read_text())
        assert (args["epochs"], args["imgsz"], args["batch"], args["seed"]) == (2, 64, 8, run["seed"])
    assert all(len(v) == 1 for v in lists.values()) and lists[0] != lists[1]
    n_imgs = {len(next(iter(v)).splitlines()) for v in lists.values()}
    assert n_imgs == {12}  # 50 % of 22 positives + 50 % of 2 negatives; val untouched
    # table = mean ± sample std of the per-run metrics
    for row in r["table"]:
        vals = [x["metrics"]["mAP50-95"] for x in r["runs"] if x["schedule"] == row["schedule"]]
        assert row["n"] == 2 and abs(row["mAP50-95"] - statistics.mean(vals)) < 1e-12
        assert abs(row["mAP50-95_std"] - statistics.stdev(vals)) < 1e-12
    # each schedule's own L2-SP default: the recipe's pull for two-stage, none for the plain baseline
    assert {row["schedule"]: row["l2sp"] for row in r["table"]} == {"full": [0.0], "two-stage": [1.0]}
    md = (out / "compare.md").read_text().splitlines()
    assert md[0].startswith("| train fraction | schedule | L2-SP | mAP50 | mAP50-95") and len(md) == 4
    assert md[2].startswith("| 0.5 | full | 0 |") and md[3].startswith("| 0.5 | two-stage | 1 |")
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "compare.json").read_text())["table"] == json.loads(json.dumps(r["table"]))

    # Re-running on the same folder skips finished runs (an interrupted comparison resumes).
    mtimes = {x["tag"]: (Path(x["run_dir"]) / "summary.json").stat().st_mtime_ns for x in r["runs"]}
    r2 = compare(tiny_yolo_dataset, out, **kw)
    assert {x["tag"]: (Path(x["run_dir"]) / "summary.json").stat().st_mtime_ns for x in r2["runs"]} == mtimes
    assert r2["table"] == r["table"]
