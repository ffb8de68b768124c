"""``yolo-ft weights import`` end to end, its bad-input errors, and that Ultralytics' trainer starts
from the bundled checkpoint's weights (a real 1-epoch CPU run at imgsz 64)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "YOLO_FT_ONLINE"}
    return subprocess.run([sys.executable, "-m", "yolo_ft", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_import_from_a_folder_of_calibration_images(shared_weights: Path, shared_datasets: Path, tmp_path: Path):
    calib = tmp_path / "calib"
    calib.mkdir()
    src = shared_datasets / "bccd-blood-cells-voc/BCCD/JPEGImages"
    for name in ("BloodImage_00003.jpg", "BloodImage_00004.jpg"):
        shutil.copy2(src / name, calib / name)
    out = tmp_path / "out" / "coco_n.pt"
    r = _run(["weights", "import", str(shared_weights / "yolo11n_int8.onnx"), "--out", str(out), "--calib", str(calib)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "vs onnxruntime" in r.stdout and f"wrote {out}" in r.stdout
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["yolo_ft_provenance"]["calibration_images"] == ["BloodImage_00003.jpg", "BloodImage_00004.jpg"]
    assert ckpt["model"].names[5] == "bus" and oct(out.stat().st_mode & 0o777) != "0o600"
    assert [p.name for p in out.parent.iterdir()] == ["coco_n.pt"]  # no temp files left behind


def test_cli_import_rejects_a_corrupt_onnx_and_writes_nothing(tmp_path: Path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf" * 10)
    out = tmp_path / "out.pt"
    r = _run(["weights", "import", str(bad), "--out", str(out)], tmp_path)
    assert r.returncode == 2 and "broken.onnx" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx"]


def test_cli_import_names_a_missing_calibration_image(shared_weights: Path, tmp_path: Path):
    r = _run(["weights", "import", str(shared_weights / "yolo11n_int8.onnx"), "--out", str(tmp_path / "o.pt"),
              "--calib", str(tmp_path / "nope.jpg")], tmp_path)
    assert r.returncode == 2 and "nope.jpg" in r.stderr
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.timeout(300)
def test_ultralytics_trainer_starts_from_the_bundled_weights(tiny_yolo_dataset: Path, tmp_path: Path):
    """model.train() accepts the checkpoint and transfers every backbone/neck tensor (BN stats too);
    only the 80-class head layers are replaced for the 1-class dataset."""
    from yolo_ft.train.weights import bundled_weights
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    ref = torch.load(bundled_weights(), map_location="cpu", weights_only=False)["model"].float().state_dict()
    seen: dict[str, torch.Tensor] = {}

    def grab(trainer):
        seen.update({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()})

    model = YOLO(str(bundled_weights()))
    model.add_callback("on_train_start", grab)
    model.train(data=str(tiny_yolo_dataset), epochs=1, imgsz=64, batch=8, device="cpu", workers=0, seed=0,
                amp=False, plots=False, val=False, project=str(tmp_path), name="run", exist_ok=True, verbose=False)
    same = [k for k in ref if k in seen and ref[k].shape == seen[k].shape and torch.equal(ref[k], seen[k].float())]
    backbone_neck = [k for k in ref if not k.startswith("model.23.") and not k.endswith("num_batches_tracked")]
    assert set(backbone_neck) <= set(same)
    assert seen["model.23.cv3.0.2.weight"].shape[0] == 1 and ref["model.23.cv3.0.2.weight"].shape[0] == 80
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
