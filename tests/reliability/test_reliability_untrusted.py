"""Untrusted files never run code silently: label caches, checkpoints, YAML tags, and the App's address.

* Ultralytics ``*.cache`` files are pickles (``np.load(allow_pickle=True)``). A malicious cache whose
  unpickling would create a directory sits in the source: ``prepare`` never loads it (the directory is
  never created) and never copies it. A control shows the same file *does* create it when loaded.
* A ``.pt`` checkpoint is a pickle too and yolo-ft cannot load Ultralytics checkpoints without it,
  so every stage that loads one (train, export, predict, review) warns *before* loading a ``.pt`` that
  is not from a yolo-ft run or the bundled weights (yolo_ft.utils.untrusted).
* YAML is always loaded safely: a ``!!python/object`` tag in a data.yaml or a train config is refused
  with a message naming the file, and never executed.
* The FiftyOne App binds to 127.0.0.1 unless ``--address`` says otherwise.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo_ft.records import InvalidDatasetError, YoloFtError

REPO = Path(__file__).resolve().parents[2]
EVENTS: list[tuple[str, str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "os.mkdir" and args and "PWNED" in os.fsdecode(args[0]):
        EVENTS.append(("code ran", os.fsdecode(args[0])))


sys.addaudithook(_audit)


class _Evil:
    """Unpickling this creates ``path`` — harmless, but proof that the pickle ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def png(seed: int) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def yolo_source(root: Path) -> Path:
    for s in ("train", "val"):
        (root / "images" / s).mkdir(parents=True)
        (root / "labels" / s).mkdir(parents=True)
        (root / "images" / s / f"{s}.png").write_bytes(png(len(s)))
        (root / "labels" / s / f"{s}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return root


def evil_cache(path: Path, pwned: Path) -> None:
    with open(path, "wb") as f:  # exactly how Ultralytics saves a cache: np.save of a pickled object
        np.save(f, np.array(_Evil(pwned), dtype=object), allow_pickle=True)


def test_pickled_label_caches_are_never_loaded_or_copied(tmp_path: Path) -> None:
    from yolo_ft.prepare.api import prepare

    src = yolo_source(tmp_path / "src")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: stone}\n")
    pwned = tmp_path / "PWNED"
    for where in ("labels/train.cache", "labels/val.cache", "labels/train/train.cache", "images/train.cache",
                  "train.cache"):
        evil_cache(src / where, pwned)
    report = prepare(src, tmp_path / "out")
    assert report["images"] == {"train": 1, "val": 1, "test": 0}
    assert not pwned.exists() and EVENTS == []
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix == ".cache"]
    # Control: loading the cache the way Ultralytics does would have run the code.
    r = subprocess.run([sys.executable, "-c", "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)",
                        str(src / "train.cache")], capture_output=True, cwd=tmp_path, check=False)
    assert pwned.is_dir(), r.stderr


# ------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_trust_rules(tmp_path: Path) -> None:
    from yolo_ft.utils.untrusted import BUNDLED_DIR, is_own_checkpoint, warn_untrusted_checkpoint

    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "yolo_ft_plan.json").write_text("{}")
    (run / "weights" / "best.pt").write_bytes(b"x")
    foreign = tmp_path / "downloads" / "best.pt"
    foreign.parent.mkdir()
    foreign.write_bytes(b"x")
    fake_run = tmp_path / "fake" / "weights" / "best.pt"  # a weights/ folder without a yolo-ft plan
    fake_run.parent.mkdir(parents=True)
    fake_run.write_bytes(b"x")
    assert is_own_checkpoint(BUNDLED_DIR / "yolo11n_coco.pt") and is_own_checkpoint(run / "weights" / "best.pt")
    assert not is_own_checkpoint(foreign) and not is_own_checkpoint(fake_run)
    assert warn_untrusted_checkpoint(foreign) and warn_untrusted_checkpoint(fake_run)
    assert not warn_untrusted_checkpoint(run / "weights" / "best.pt")
    assert not warn_untrusted_checkpoint(tmp_path / "model.onnx")


class _Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "yolo_ft.security":
            EVENTS.append(("warned", record.getMessage()))


def _stages():
    def train(pt: Path, tmp: Path, data: Path):
        from yolo_ft.train import train as run

        run(data, tmp / "run", weights=str(pt), epochs=2, imgsz=32, batch=2, device="cpu", workers=0)

    def export(pt: Path, tmp: Path, data: Path):
        from yolo_ft.export.onnx import export as run

        run(pt, tmp / "m.onnx", check_images=[data.parent / "images" / "val" / "val.png"])

    def predict(pt: Path, tmp: Path, data: Path):
        from yolo_ft.export.predict import predict as run

        run(pt, [str(data.parent / "images" / "val" / "val.png")])

    def review(pt: Path, tmp: Path, data: Path):
        from yolo_ft.review.predict import load_predictor

        load_predictor(pt, conf=0.25)

    return {"train": train, "export": export, "predict": predict, "review": review}


@pytest.mark.parametrize("stage", ["train", "export", "predict", "review"])
def test_foreign_checkpoint_warns_before_it_is_loaded(stage: str, tmp_path: Path) -> None:
    src = yolo_source(tmp_path / "data")
    data = src / "data.yaml"
    data.write_text(f"path: {src}\ntrain: images/train\nval: images/val\nnames: {{0: stone}}\n")
    pt = tmp_path / "downloads" / f"{stage}_best.pt"
    pt.parent.mkdir()
    pt.write_bytes(pickle.dumps(_Evil(tmp_path / f"PWNED_{stage}")))
    EVENTS.clear()
    handler = _Recorder()
    logging.getLogger("yolo_ft.security").addHandler(handler)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the file is not a real checkpoint; any failure after is fine
            _stages()[stage](pt, tmp_path, data)
    finally:
        logging.getLogger("yolo_ft.security").removeHandler(handler)
    warned = [i for i, e in enumerate(EVENTS) if e[0] == "warned" and str(pt) in e[1] and "runs code" in e[1]]
    ran = [i for i, e in enumerate(EVENTS) if e[0] == "code ran"]
    assert warned, f"{stage}: no warning before loading a foreign checkpoint; events: {EVENTS}"
    assert not ran or warned[0] < ran[0], f"{stage}: the checkpoint's code ran before the warning: {EVENTS}"


# ------------------------------------------------------------------------------------------- yaml
TAG = "!!python/object/apply:os.mkdir ['{pwned}']"


def test_python_tag_in_prepare_data_yaml_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from yolo_ft.prepare.api import prepare

    src = yolo_source(tmp_path / "src")
    pwned = tmp_path / "PWNED_prepare"
    (src / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: {TAG.format(pwned=pwned)}\n")
    with pytest.raises(InvalidDatasetError) as e:
        prepare(src, tmp_path / "out")
    assert any(p.file.endswith("data.yaml") and "YAML" in p.problem for p in e.value.problems), e.value.problems
    assert not pwned.exists() and not (tmp_path / "out").exists()


def test_python_tag_in_train_config_review_and_export_data_is_refused(tmp_path: Path) -> None:
    from yolo_ft.export.data import split_images
    from yolo_ft.review.yolo_data import load_data_yaml
    from yolo_ft.train.api import load_config

    pwned = tmp_path / "PWNED_yaml"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"epochs: 1\nweights: {TAG.format(pwned=pwned)}\n")
    with pytest.raises(YoloFtError, match="evil.yaml"):
        load_config(bad)
    src = yolo_source(tmp_path / "src")
    data = src / "data.yaml"
    data.write_text(f"path: {src}\ntrain: images/train\nval: images/val\nnames: {TAG.format(pwned=pwned)}\n")
    with pytest.raises(YoloFtError, match="data.yaml"):
        load_data_yaml(data)
    with pytest.raises(YoloFtError, match="data.yaml"):
        split_images(data, "val")
    assert not pwned.exists()


def test_cli_reports_a_tagged_config_without_traceback(tmp_path: Path) -> None:
    pwned = tmp_path / "PWNED_cli"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"epochs: {TAG.format(pwned=pwned)}\n")
    src = yolo_source(tmp_path / "src")
    (src / "data.yaml").write_text(f"path: {src}\ntrain: images/train\nval: images/val\nnames: {{0: stone}}\n")
    r = subprocess.run([sys.executable, "-m", "yolo_ft", "train", "--data", str(src / "data.yaml"), "--config", str(bad),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=300,
                       check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "evil.yaml" in r.stderr, r.stderr[-2000:]
    assert not pwned.exists() and not (tmp_path / "run").exists()


# -------------------------------------------------------------------------------------------- app
def test_fiftyone_app_listens_on_loopback_by_default() -> None:
    import inspect

    from yolo_ft.cli import build_parser
    from yolo_ft.review import app, api

    assert inspect.signature(api.review).parameters["address"].default == "127.0.0.1"
    assert inspect.signature(app.launch_app).parameters["address"].default == "127.0.0.1"
    assert inspect.signature(app.serve_review).parameters["address"].default == "127.0.0.1"
    args = build_parser().parse_args(["review", "--data", "d.yaml", "--model", "m.onnx"])
    assert args.address == "127.0.0.1"


def test_fiftyone_app_server_socket_is_bound_to_loopback(tmp_path: Path) -> None:
    """Launch the real App server on a free port and look at the listening socket."""
    import socket

    import fiftyone as fo
    import psutil

    from yolo_ft.review.app import launch_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    img = tmp_path / "a.png"
    img.write_bytes(png(3))
    ds = fo.Dataset(f"reliability-loopback-{os.getpid()}")
    ds.add_sample(fo.Sample(filepath=str(img)))
    session = launch_app(ds, port=port)
    try:
        import time

        deadline = time.monotonic() + 90
        listening = []
        while time.monotonic() < deadline and not listening:
            listening = [c.laddr for c in psutil.net_connections(kind="tcp")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
            time.sleep(0.5)
        assert listening, "the App server never listened"
        assert all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
    finally:
        session.close() if hasattr(session, "close") else None
        fo.delete_dataset(ds.name)


def test_train_warns_about_label_caches_it_did_not_make(tiny_yolo_dataset, tmp_path, caplog):
    """A *.cache shipped inside a downloaded dataset is named before Ultralytics would unpickle it;
    caches inside a dataset written by yolo-ft prepare (Ultralytics' own) are not."""
    import logging
    import shutil

    from yolo_ft.prepare import prepare
    from yolo_ft.utils.untrusted import foreign_label_caches, warn_foreign_label_caches

    ds = tmp_path / "downloaded"
    shutil.copytree(tiny_yolo_dataset.parent, ds)
    for c in ds.rglob("*.cache"):  # left by earlier training tests on the shared fixture
        c.unlink()
    data = ds / "data.yaml"
    data.write_text(data.read_text().replace(str(tiny_yolo_dataset.parent), str(ds)))
    assert foreign_label_caches(data) == []
    (ds / "labels" / "train.cache").write_bytes(b"not really a pickle")
    with caplog.at_level(logging.WARNING, logger="yolo_ft.security"):
        assert warn_foreign_label_caches(data) == [ds / "labels" / "train.cache"]
    assert "train.cache" in caplog.text and "unpickle" in caplog.text

    prepared = tmp_path / "prepared"
    prepare(ds, prepared)  # the cache in the source is never copied ...
    assert not list(prepared.rglob("*.cache"))
    (prepared / "labels" / "train.cache").write_bytes(b"written by an Ultralytics run on this dataset")
    assert foreign_label_caches(prepared / "data.yaml") == []  # ... and caches in our own output are trusted
