"""Shared fixtures: real data from ../shared/datasets, copied into temp dirs, and one tiny real model.

Environment is set before anything imports Ultralytics or FiftyOne: no telemetry, no downloads,
Ultralytics settings and the FiftyOne database kept inside the test session's temp dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="yolo-ft-tests-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_SESSION_TMP / "ultralytics"))
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(_SESSION_TMP / "fiftyone-db"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLO_FT_SHARED", REPO.parent / "shared")).resolve()
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets (read-only in CI: copy before writing anything beside it)."""
    d = SHARED / "datasets"
    if not d.is_dir():
        pytest.fail(f"real test data not found at {d} (set YOLO_FT_SHARED to the shared/ folder)")
    return d


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    return SHARED / "weights"


@pytest.fixture(scope="session")
def kidney_yolo(shared_datasets: Path) -> Path:
    """The real kidney-stone CT YOLO dataset root (read-only)."""
    return shared_datasets / "kidney-stone-ct-yolo"


def _copy_pairs(src_root: Path, dst_root: Path, split_src: str, split_dst: str, names: list[str]) -> None:
    (dst_root / "images" / split_dst).mkdir(parents=True, exist_ok=True)
    (dst_root / "labels" / split_dst).mkdir(parents=True, exist_ok=True)
    for name in names:
        img = src_root / "datasets" / "images" / split_src / name
        shutil.copy2(img, dst_root / "images" / split_dst / name)
        lbl = src_root / "datasets" / "labels" / split_src / (Path(name).stem + ".txt")
        shutil.copy2(lbl, dst_root / "labels" / split_dst / lbl.name)


@pytest.fixture(scope="session")
def tiny_yolo_dataset(kidney_yolo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real YOLO dataset (24 train / 8 val kidney-stone CT images incl. negatives) with data.yaml.

    Returns the path to data.yaml. Built by plain copying so stage tests do not depend on `prepare`.
    """
    root = tmp_path_factory.mktemp("tiny_yolo")
    train = sorted(p.name for p in (kidney_yolo / "datasets/images/train").iterdir())
    val = sorted(p.name for p in (kidney_yolo / "datasets/images/validation").iterdir())
    # Deterministic pick: first 2 negatives + 22 stones for train, 1 negative + 7 stones for val.
    pick_train = [n for n in train if n.startswith("Normal")][:2] + [n for n in train if n.startswith("STONE")][:22]
    pick_val = [n for n in val if n.startswith("Normal")][:1] + [n for n in val if n.startswith("STONE")][:7]
    _copy_pairs(kidney_yolo, root, "train", "train", pick_train)
    _copy_pairs(kidney_yolo, root, "validation", "val", pick_val)
    data = root / "data.yaml"
    data.write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: KIDNEY_STONE\n", encoding="utf-8"
    )
    return data


@pytest.fixture(scope="session")
def tiny_trained_model(tiny_yolo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real YOLO11n-sized checkpoint trained for 1 epoch at imgsz 64 on CPU (plain Ultralytics).

    Used by export/review tests that need *a* trained detection checkpoint, not a good one.
    """
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("tiny_train")
    model = YOLO("yolo11n.yaml")
    model.train(
        data=str(tiny_yolo_dataset), epochs=1, imgsz=64, batch=8, device="cpu", workers=0,
        project=str(project), name="run", exist_ok=True, plots=False, verbose=False, seed=0,
        amp=False, val=True,
    )
    best = project / "run" / "weights" / "best.pt"
    if not best.exists():
        best = project / "run" / "weights" / "last.pt"
    assert best.exists()
    return best


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep things a person may want to look at (screenshots, reports)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
