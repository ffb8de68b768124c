"""Fixtures for export/runtime tests: one checked fp32 export of the tiny real model, shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Runs a script with torch/ultralytics made unimportable (a meta-path finder that raises ImportError).
NO_TORCH = '''
import importlib.abc, runpy, sys
BLOCKED = ("torch", "torchvision", "ultralytics")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this process")
        return None
sys.meta_path.insert(0, Block())
script, sys.argv = sys.argv[1], sys.argv[1:]
if script == "-c":
    exec(sys.argv[1])
else:
    runpy.run_path(script, run_name="__main__")
'''


@pytest.fixture(scope="session")
def no_torch_runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("no_torch") / "no_torch.py"
    p.write_text(NO_TORCH, encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def kidney_sizes(kidney_yolo: Path) -> dict[str, Path]:
    """One real kidney-stone image per size we care about (SOURCE.md: 512x512 and 1236x1001 are common)."""
    import cv2

    want = {(512, 512): "512x512", (1001, 1236): "1236x1001", (719, 888): "888x719"}
    found: dict[str, Path] = {}
    for p in sorted((kidney_yolo / "datasets/images/validation").iterdir()):
        if not p.name.startswith("STONE"):
            continue
        im = cv2.imread(str(p))
        key = want.get(im.shape[:2])
        if key and key not in found:
            found[key] = p
        if len(found) == len(want):
            break
    assert set(found) == set(want.values()), found
    return found


REPO = Path(__file__).resolve().parents[2]
COCO = REPO / "yolo_ft" / "assets" / "yolo11n_coco.pt"


@pytest.fixture(scope="session")
def export_model(tiny_yolo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint fine-tuned 2 epochs at imgsz 128 (from the bundled COCO YOLO11n when present).

    Larger than the shared 64-px fixture so each image yields a few dozen boxes to compare (~10 s).
    """
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("export_train")
    YOLO(str(COCO) if COCO.is_file() else "yolo11n.yaml").train(
        data=str(tiny_yolo_dataset), epochs=2, imgsz=128, batch=8, device="cpu", workers=0,
        project=str(project), name="run", exist_ok=True, plots=False, verbose=False, seed=0, amp=False,
    )
    best = project / "run" / "weights" / "best.pt"
    return best if best.exists() else project / "run" / "weights" / "last.pt"


@pytest.fixture(scope="session")
def fp32_export(export_model: Path, tiny_yolo_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """(model.onnx path, report, .pt) of a checked fp32 export; the checkpoint is copied first."""
    from yolo_ft.export.onnx import export

    d = tmp_path_factory.mktemp("fp32")
    pt = d / "best.pt"
    shutil.copy2(export_model, pt)
    out = d / "out" / "model.onnx"
    report = export(pt, out, calib=tiny_yolo_dataset)
    return out, report, pt
