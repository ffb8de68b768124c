"""Atomic writes: complete-or-absent files and folders, and no silent replacement of a folder."""

from __future__ import annotations

import pytest

from yolo_ft.utils.atomic import atomic_output_dir, atomic_write_text


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "d") as d:
            (d / "x").write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_folder_created_meanwhile_is_not_replaced_without_overwrite(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(FileExistsError, match="another process"):
        with atomic_output_dir(out) as d:
            (d / "mine").write_text("1")
            out.mkdir()  # a concurrent run finished first
            (out / "theirs").write_text("2")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # our temp folder is gone


def test_overwrite_replaces_whole_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old").write_text("x")
    with atomic_output_dir(out, overwrite=True) as d:
        (d / "new").write_text("y")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("name", ["ds", "d[s]*?"])  # glob metacharacters in the target name are literal
def test_leftovers_of_a_killed_writer_are_tidied_by_the_next_run(tmp_path, name):
    dead = _dead_pid()
    partial = tmp_path / f".{name}.pid{dead}.k3j2.partial"
    (partial / "labels").mkdir(parents=True)
    (partial / "labels" / "a.txt").write_text("half")
    with atomic_output_dir(tmp_path / name) as d:
        (d / "data.yaml").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_an_overwrite_killed_between_its_renames_gets_the_old_output_back(tmp_path):
    dead = _dead_pid()
    old = tmp_path / f".ds.pid{dead}.x1.old"
    (old / "x").mkdir(parents=True)
    (old / "x" / "data.yaml").write_text("previous")
    with pytest.raises(FileExistsError, match="already exists"):  # restored, so not silently replaced
        with atomic_output_dir(tmp_path / "ds"):
            pass
    assert (tmp_path / "ds" / "data.yaml").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_live_writers_temp_is_left_alone(tmp_path):
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".ds.pid{live.pid}.zz.partial"
        theirs.mkdir()
        other = tmp_path / ".ds.backup"  # not a yolo-ft temp name: never touched
        other.mkdir()
        with atomic_output_dir(tmp_path / "ds") as d:
            (d / "f").write_text("1")
        assert theirs.is_dir() and other.is_dir() and (tmp_path / "ds" / "f").is_file()
    finally:
        live.kill()
        live.wait()
