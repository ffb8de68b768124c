"""``resolve_weights`` offline: explicit path, a name in a weights folder, the bundled fallback, and a
clear, instant error for anything else — with any network connection attempt failing the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from yolo_ft.records import YoloFtError
from yolo_ft.train.weights import bundled_weights, resolve_weights


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple]:
    """Offline mode, an empty CWD and no weights dir from the environment; records connection attempts."""
    monkeypatch.delenv("YOLO_FT_ONLINE", raising=False)
    monkeypatch.delenv("YOLO_FT_WEIGHTS_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    attempts: list[tuple] = []
    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(("connect", address))
            raise OSError("network disabled by test")
        return real_connect(self, address)

    def getaddrinfo(host, *a, **k):
        attempts.append(("getaddrinfo", host))
        raise socket.gaierror("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    resolve_weights(str(bundled_weights()))  # warm imports so timings below measure the lookup only
    return attempts


def _fake_ckpt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": None}, path)
    return path


def test_explicit_path_is_returned_as_is(offline, tmp_path: Path):
    ck = _fake_ckpt(tmp_path / "runs" / "best.pt")
    assert resolve_weights(str(ck)) == ck
    assert resolve_weights(ck) == ck
    assert offline == []


def test_missing_explicit_path_names_the_file(offline, tmp_path: Path):
    with pytest.raises(YoloFtError, match=r"weights file not found: .*runs/nope\.pt"):
        resolve_weights(str(tmp_path / "runs" / "nope.pt"))


def test_name_found_in_weights_dir_env_and_cwd(offline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    wd = tmp_path / "w"
    ck = _fake_ckpt(wd / "yolo11s.pt")
    assert resolve_weights("yolo11s.pt", weights_dir=wd) == wd / "yolo11s.pt"
    monkeypatch.setenv("YOLO_FT_WEIGHTS_DIR", str(wd))
    assert resolve_weights("yolo11s.pt") == ck
    monkeypatch.delenv("YOLO_FT_WEIGHTS_DIR")
    local = _fake_ckpt(Path.cwd() / "yolo11m.pt")
    assert resolve_weights("yolo11m.pt").resolve() == local.resolve()
    # a real yolo11n.pt in the weights dir wins over the bundled one
    real_n = _fake_ckpt(wd / "yolo11n.pt")
    assert resolve_weights("yolo11n.pt", weights_dir=wd) == real_n
    assert offline == []


def test_yolo11n_and_none_fall_back_to_the_bundled_checkpoint(offline, tmp_path: Path, caplog):
    bundled = bundled_weights()
    assert bundled.name == "yolo11n_coco.pt" and bundled.parent.name == "assets" and bundled.is_file()
    with caplog.at_level("INFO"):
        assert resolve_weights("yolo11n.pt", weights_dir=tmp_path / "empty") == bundled
    assert "bundled" in caplog.text and "yolo11n.pt" in caplog.text and "YOLO_FT_ONLINE" in caplog.text
    assert resolve_weights(None) == bundled
    assert offline == []


def test_unknown_missing_name_fails_fast_and_says_where_to_put_it(offline, tmp_path: Path):
    wd = tmp_path / "my-weights"
    t0 = time.perf_counter()
    with pytest.raises(YoloFtError) as err:
        resolve_weights("yolo11x.pt", weights_dir=wd)
    elapsed = time.perf_counter() - t0
    msg = str(err.value)
    assert "yolo11x.pt" in msg and str(wd) in msg and "YOLO_FT_ONLINE=1" in msg
    assert elapsed < 1.0, elapsed
    assert offline == []  # not one DNS lookup or connection


def test_cli_which_prints_the_resolved_path(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_FT_ONLINE", "YOLO_FT_WEIGHTS_DIR")}
    env_run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    out = subprocess.run([sys.executable, "-m", "yolo_ft", "weights", "which"], **env_run)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]) == bundled_weights()
    bad = subprocess.run([sys.executable, "-m", "yolo_ft", "weights", "which", "yolo11l.pt"], **env_run)
    assert bad.returncode == 2 and "yolo11l.pt" in bad.stderr and "Traceback" not in bad.stderr
