"""summary.json, the plot, the CLI (config + flag precedence) and a run with the network blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# Runs yolo-ft with every outgoing connection and DNS lookup raising: any network attempt fails the run.
NO_NET = (
    "import socket, sys\n"
    "def _blocked(*a, **k):\n"
    "    raise OSError('network blocked by test: ' + repr(a[:2]))\n"
    "socket.socket.connect = _blocked\nsocket.socket.connect_ex = _blocked\n"
    "socket.getaddrinfo = _blocked\nsocket.create_connection = _blocked\n"
    "from yolo_ft.cli import main\nsys.exit(main(sys.argv[1:]))\n"
)


def _is_num(x) -> bool:
    return isinstance(x, float | int) and not isinstance(x, bool)


def test_summary_structure_and_numbers(two_stage_run, start_ckpt, tiny_yolo_dataset):
    rundir, summary, _ = two_stage_run
    on_disk = json.loads((rundir / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert {"weights", "data", "schedule", "stages", "best", "metrics"} <= set(on_disk)
    assert on_disk["weights"] == str(start_ckpt) and on_disk["data"] == str(tiny_yolo_dataset.resolve())
    assert on_disk["schedule"] == "two-stage" and on_disk["l2sp"] == 1.0  # the recipe's L2-SP, by default
    head, full = on_disk["stages"]
    assert (head["name"], head["epochs"], full["name"], full["epochs"]) == ("head", [1, 1], "full", [2, 2])
    assert head["frozen_layers"] == list(range(11)) and full["frozen_layers"] == []
    assert 0 < head["trainable_params"] < full["trainable_params"]
    assert head["lr"] == {"rest": 0.02} and head["optimizer"] == "SGD"
    for st in (head, full):
        assert set(st["metrics"]) == {"mAP50", "mAP50-95", "precision", "recall"}
        assert all(_is_num(v) and 0 <= v <= 1 for v in st["metrics"].values())
        assert (rundir / st["checkpoint"]).is_file()
    assert all(_is_num(v) and 0 <= v <= 1 for v in on_disk["metrics"].values())
    assert on_disk["best"]["epoch"] in (1, 2) and (rundir / on_disk["best"]["path"]).is_file()
    assert [e["epoch"] for e in on_disk["per_epoch"]] == [1, 2]
    png = rundir / on_disk["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cli_config_flag_precedence_offline(tiny_yolo_dataset, tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("schedule: full\nepochs: 3\nimgsz: 96\nbatch: 8\ndevice: cpu\nworkers: 0\nlr0: 0.004\n"
                   "amp: false\noptimizer: AdamW\n")
    out = tmp_path / "run"
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("YOLO_FT_ONLINE", None)
    cmd = [sys.executable, "-c", NO_NET, "train", "--data", str(tiny_yolo_dataset), "--out", str(out),
           "--config", str(cfg), "--epochs", "1", "--imgsz", "64"]  # no --weights: the bundled COCO checkpoint
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "network blocked by test" not in r.stdout + r.stderr
    args = yaml.safe_load((out / "args.yaml").read_text())
    assert (args["epochs"], args["imgsz"]) == (1, 64)  # flags beat the config
    assert (args["lr0"], args["optimizer"], args["batch"]) == (0.004, "AdamW", 8)  # config beats defaults
    assert args["close_mosaic"] == 10  # default where neither says anything
    s = json.loads((out / "summary.json").read_text())
    from yolo_ft.train.weights import bundled_weights

    assert s["weights"] == str(bundled_weights())  # resolved offline, nothing downloaded
    assert s["schedule"] == "full" and [st["name"] for st in s["stages"]] == ["full"]
    assert s["l2sp"] == 0.0  # plain full fine-tuning (the A/B baseline) never gets the two-stage pull
    assert s["stages"][0]["frozen_layers"] == [] and s["stages"][0]["optimizer"] == "AdamW"
    assert "best epoch 1 (full)" in r.stdout


def test_cli_errors_are_clear(tiny_yolo_dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "nonempty"
    out.mkdir()
    (out / "x").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "train", "--data", str(tiny_yolo_dataset), "--out",
                        str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "not empty" in r.stderr and (out / "x").read_text() == "keep me"
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "train", "--data", str(tmp_path / "missing.yaml"),
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "train", "--resume", "--out", str(tmp_path / "none")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "nothing to resume" in r.stderr
