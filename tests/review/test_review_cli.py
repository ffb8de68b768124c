"""`yolo-ft review` flags: build without the App, --list, --delete, and clear errors for bad input."""

from __future__ import annotations

import shutil

import fiftyone as fo
import pytest

from yolo_ft.cli import main
from yolo_ft.records import YoloFtError
from yolo_ft.review.yolo_data import load_data_yaml, read_labels


def test_no_launch_list_and_delete(tiny_yolo_dataset, review_model, tmp_path, capsys):
    report = tmp_path / "rep"
    rc = main([
        "review", "--data", str(tiny_yolo_dataset), "--model", str(review_model), "--conf", "0.02",
        "--no-launch", "--report", str(report),
    ])
    out = capsys.readouterr().out
    name = f"yolo-ft-{tiny_yolo_dataset.parent.name}-val"  # the predictable default name
    assert rc == 0 and f"dataset {name}: 8 samples" in out and "mAP@0.5" in out
    assert (report / "index.html").is_file() and f"report: {report / 'index.html'}" in out
    assert fo.dataset_exists(name)

    assert main(["review", "--list"]) == 0
    assert name in capsys.readouterr().out.split()

    fo.Dataset("not-ours", persistent=True)
    assert main(["review", "--delete", "not-ours"]) == 2
    assert "not created by yolo-ft" in capsys.readouterr().err and fo.dataset_exists("not-ours")

    assert main(["review", "--delete", name]) == 0
    assert capsys.readouterr().out == f"deleted {name}\n"
    assert not fo.dataset_exists(name)
    assert main(["review", "--list"]) == 0
    assert name not in capsys.readouterr().out.split()
    assert main(["review", "--delete", name]) == 2
    assert "no FiftyOne dataset named" in capsys.readouterr().err


def test_report_refuses_to_replace_an_unrelated_folder(tiny_yolo_dataset, review_model, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    rc = main(["review", "--data", str(tiny_yolo_dataset), "--model", str(review_model), "--no-launch",
               "--name", "yolo-ft-test-cli-refuse", "--report", str(folder)])
    assert rc == 2 and "holds no index.html" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "keep me"


def test_missing_arguments_and_bad_model(tiny_yolo_dataset, tmp_path, capsys):
    assert main(["review", "--data", str(tiny_yolo_dataset)]) == 2
    assert "needs --data and --model" in capsys.readouterr().err
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"x")
    assert main(["review", "--data", str(tiny_yolo_dataset), "--model", str(bad), "--no-launch"]) == 2
    assert "unsupported model format '.tflite'" in capsys.readouterr().err


def test_bad_data_yaml_and_labels_name_the_file(tiny_yolo_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(tiny_yolo_dataset.parent, root)
    y = root / "data.yaml"
    y.write_text("names: {0: a, 2: b}\nval: images/val\n")
    with pytest.raises(YoloFtError, match=r"data\.yaml: class ids in 'names' must be 0\.\.1"):
        load_data_yaml(y)
    y.write_text("names: [a]\nval: images/nope\n")
    from yolo_ft.review.yolo_data import iter_split_images

    with pytest.raises(YoloFtError, match="source .*images/nope does not exist"):
        list(iter_split_images(load_data_yaml(y), "validation"))
    with pytest.raises(YoloFtError, match="no 'test' split"):
        list(iter_split_images(load_data_yaml(y), "test"))
    lbl = root / "labels" / "val" / "broken.txt"
    lbl.write_text("0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(YoloFtError, match=r"broken\.txt:2: class id 3 is not in data.yaml names"):
        read_labels(lbl, {0: "a"})
    lbl.write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(YoloFtError, match=r"broken\.txt:1: expected 'class cx cy w h'"):
        read_labels(lbl, {0: "a"})
