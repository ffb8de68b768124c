"""``yolo-ft prepare`` end to end (the real console entry point) and --augment."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from prepare_helpers import make_layout
from yolo_ft.cli import main


def test_cli_summary_strict_failure_and_overwrite(kidney_yolo: Path, tmp_path: Path, capsys) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", "kidney_yaml", n_train=6, n_val=3)
    out = tmp_path / "out"
    assert main(["prepare", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "KIDNEY_STONE" in text and "near-duplicate" in text
    assert json.loads((out / "report.json").read_text())["images"] == {"train": 6, "val": 3, "test": 0}

    assert main(["prepare", str(src), "--out", str(out)]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err

    bad = sorted((src / "datasets/labels/train").glob("STONE*.txt"))[:2]
    for b in bad:
        b.write_text("0 0.5 0.5 0.0 0.1\n")
    assert main(["prepare", str(src), "--out", str(tmp_path / "out2")]) == 2
    printed = capsys.readouterr().out
    assert all(f"{b}: " in printed and "zero or negative area" in printed for b in bad)
    assert not (tmp_path / "out2").exists()
    assert main(["prepare", str(src), "--out", str(tmp_path / "out2"), "--skip-invalid", "--resplit",
                 "--split", "0.5,0.5", "--seed", "7"]) == 0
    report = json.loads((tmp_path / "out2/report.json").read_text())
    assert len(report["skipped"]) == 2 and sum(report["images"].values()) == 7
    assert report["settings"]["seed"] == 7 and report["split"]["mode"] == "grouped"


def test_console_script_help_is_light() -> None:
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "prepare", "--help"], capture_output=True, text=True,
                       timeout=60, check=True)
    for flag in ("--out", "--format", "--images", "--masks", "--split", "--seed", "--group-by", "--resplit",
                 "--classes", "--augment", "--skip-invalid", "--overwrite", "--threshold", "--connectivity",
                 "--min-area", "--window"):
        assert flag in r.stdout


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_augment_adds_bbox_safe_train_variants_deterministically(kidney_yolo: Path, tmp_path: Path) -> None:
    src = make_layout(kidney_yolo, tmp_path / "src", "images_split", n_train=4, n_val=2)
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [KIDNEY_STONE]\n")
    r1 = main(["prepare", str(src), "--out", str(tmp_path / "a"), "--augment", "2", "--seed", "5"])
    r2 = main(["prepare", str(src), "--out", str(tmp_path / "b"), "--augment", "2", "--seed", "5"])
    assert r1 == r2 == 0
    a, b = tmp_path / "a", tmp_path / "b"
    report = json.loads((a / "report.json").read_text())
    assert report["images"] == {"train": 12, "val": 2, "test": 0}  # 4 originals + 2 variants each
    assert report["augmented"]["images"] == 8
    assert len(list((a / "images/val").iterdir())) == 2  # val untouched
    assert _digest(a / "images/train") == _digest(b / "images/train")
    assert _digest(a / "labels/train") == _digest(b / "labels/train")
    aug_labels = sorted((a / "labels/train").glob("*__aug*.txt"))
    assert len(aug_labels) == 8
    n_boxes = 0
    for lbl in aug_labels:
        for line in lbl.read_text().splitlines():
            c, *v = line.split()
            v = np.array(v, dtype=float)
            assert c == "0" and (v[:2] >= 0).all() and (v[:2] <= 1).all() and (v[2:] > 0).all()
            assert (v[0] - v[2] / 2 >= -1e-6) and (v[0] + v[2] / 2 <= 1 + 1e-6)
            n_boxes += 1
    assert n_boxes == report["augmented"]["boxes"] > 0
    # the negative stays a negative in its variants
    neg = next((a / "labels/train").glob("Normal*__aug1.txt"))
    assert neg.read_text() == ""
