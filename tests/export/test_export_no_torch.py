"""The runtime and the export/ deployment app in a process where importing torch or ultralytics is
impossible (a meta-path finder raises ImportError), from the repo and from a vendored copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _run(runner: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(runner), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_torch_is_really_unimportable(no_torch_runner):
    r = _run(no_torch_runner, "-c", "import torch")
    assert r.returncode != 0 and "torch is blocked" in r.stderr
    r = _run(no_torch_runner, "-c", "import ultralytics")
    assert r.returncode != 0 and "ultralytics is blocked" in r.stderr


def test_runtime_without_torch_matches_in_process(no_torch_runner, fp32_export, kidney_sizes, tmp_path):
    from yolo_ft.runtime import Detector

    out, _, _ = fp32_export
    imgs = [str(p) for p in kidney_sizes.values()]
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from yolo_ft.runtime import Detector\n"
        f"d = Detector({str(out)!r})\n"
        f"res = [x.to_list() for x in d.predict({imgs!r}, conf=0.01)]\n"
        "assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules\n"
        "print(json.dumps({'providers': d.providers, 'res': res}))\n"
    )
    r = _run(no_torch_runner, "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["providers"] == ["CPUExecutionProvider"]
    assert "running on CPU" in r.stderr  # the notice when CUDA is not available
    expected = [x.to_list() for x in Detector(out).predict(imgs, conf=0.01)]
    assert sum(len(x) for x in expected) > 0
    for g, e in zip(got["res"], expected, strict=True):
        assert [b["class_name"] for b in g] == [b["class_name"] for b in e]
        np.testing.assert_allclose([b["xyxy"] for b in g], [b["xyxy"] for b in e], atol=1e-4)


def test_export_app_runs_from_repo_and_vendored_copy(no_torch_runner, fp32_export, kidney_sizes, tmp_path):
    from yolo_ft.runtime import Detector

    out, report, _ = fp32_export
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for p in kidney_sizes.values():
        shutil.copy2(p, img_dir / p.name)
    expected = {str(img_dir / p.name): d.to_list()
                for p, d in zip(kidney_sizes.values(), Detector(out).predict([str(img_dir / p.name) for p in kidney_sizes.values()], conf=0.05))}

    # 1. inside the repository (falls back to yolo_ft.runtime)
    r = _run(no_torch_runner, str(REPO / "export" / "app.py"), "--model", str(out), str(img_dir), "--conf", "0.05",
             "--out", str(tmp_path / "a.json"))
    assert r.returncode == 0, r.stderr
    # 2. an app folder built as export/README.md says: app.py + a copy of yolo_ft/runtime, nothing else
    app = tmp_path / "myapp"
    app.mkdir()
    shutil.copy2(REPO / "export" / "app.py", app / "app.py")
    shutil.copytree(REPO / "yolo_ft" / "runtime", app / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(out, app / "model.onnx")
    r2 = _run(no_torch_runner, str(app / "app.py"), "--model", "model.onnx", str(img_dir), "--conf", "0.05",
              cwd=app)
    assert r2.returncode == 0, r2.stderr
    for result in (json.loads((tmp_path / "a.json").read_text()), json.loads(r2.stdout)):
        assert {x["image"] for x in result} == set(expected)
        for x in result:
            e = expected[x["image"]]
            assert len(x["detections"]) == len(e)
            np.testing.assert_allclose([d["xyxy"] for d in x["detections"]], [d["xyxy"] for d in e], atol=1e-4)
    assert "KIDNEY_STONE" in r2.stderr or sum(len(v) for v in expected.values()) == 0
    # the provenance embedded in the model reaches the app's log (only model.onnx was copied, no sidecar)
    assert not (app / "model.onnx.json").exists()
    assert f"fp32 export of checkpoint sha256 {report['source']['sha256'][:12]}, PyTorch parity passed" in r2.stderr


def test_runtime_imports_nothing_outside_its_folder():
    """Static guard for copy-ability: runtime modules import only stdlib, numpy, cv2, onnxruntime, themselves."""
    import ast

    allowed = {"numpy", "cv2", "onnxruntime"} | set(sys.stdlib_module_names)
    for f in (REPO / "yolo_ft" / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import inside runtime/
                    continue
                names = [node.module]
            else:
                continue
            for n in names:
                assert n.split(".")[0] in allowed, f"{f.name} imports {n}"


def test_detector_warns_when_the_requested_provider_does_not_load(fp32_export, caplog):
    """ORT silently falls back when a provider (CUDA without its libraries) cannot load; we say so."""
    import logging

    from yolo_ft.runtime import Detector

    out, _, _ = fp32_export
    with caplog.at_level(logging.WARNING, logger="yolo_ft"):
        det = Detector(out, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if det.providers[0] == "CUDAExecutionProvider":
        pytest.skip("CUDA loaded on this machine: nothing fell back")
    assert det.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider could not be loaded" in caplog.text and "running on CPUExecutionProvider" in caplog.text
