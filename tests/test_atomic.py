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
