"""Atomic writes: a reader of the target sees either the old content or the complete new one.

Everything yolo-ft writes (datasets, checkpoints copied out, ONNX models, reports) goes through
these helpers so a crash or SIGKILL never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_output_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``.

    For writers that insist on a filename (torch.save, onnx.save, cv2.imwrite).
    The temp name keeps the suffix so format sniffing by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner_pid(temp: Path, name: str) -> int | None:
    """The writer's pid from a temp sibling's name ('.NAME.pidN.xxxx.partial'); None if not ours."""
    rest = temp.name[len(name) + 2 :]
    tag = rest.split(".", 1)[0]
    return int(tag[3:]) if tag.startswith("pid") and tag[3:].isdigit() else None


def recover_stale_temps(path: Path) -> list[str]:
    """Tidy what a killed writer of ``path`` left: its half-built ``.partial`` folder is removed; an
    ``.old`` folder (the previous output, moved aside by an --overwrite that died before the new one was
    in place) is moved back when ``path`` is missing, else removed. Only temps whose writer process is
    gone are touched, so a concurrent run is never disturbed. Returns what was done, for the log."""
    done = []
    for temp in sorted(path.parent.glob(f".{glob.escape(path.name)}.pid*")):
        pid = _owner_pid(temp, path.name)
        if pid is None or pid == os.getpid() or _pid_alive(pid) or not temp.is_dir():
            continue
        if temp.name.endswith(".old") and (temp / "x").exists() and not path.exists():
            os.replace(temp / "x", path)
            done.append(f"restored {path} from an interrupted --overwrite")
        elif temp.name.endswith((".partial", ".old")):
            done.append(f"removed {temp.name} left by an interrupted run (pid {pid})")
        else:
            continue
        shutil.rmtree(temp, ignore_errors=True)
    for line in done:
        log.warning(line)
    return done


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a hidden sibling temp dir and move it onto ``path`` at the end.

    If ``path`` exists and ``overwrite`` is False, raises ``FileExistsError`` before anything
    is written. With ``overwrite`` the old directory is moved aside first and removed only
    after the new one is in place, so an interruption never loses both.
    """
    path = Path(path).absolute()
    if path.parent.is_dir():
        recover_stale_temps(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f".{path.name}.pid{os.getpid()}."  # lets a later run tell a dead writer's leftovers from a live one's
    tmp = Path(tempfile.mkdtemp(prefix=tag, suffix=".partial", dir=path.parent))
    try:
        yield tmp
        _fsync_dir(tmp)
        if path.exists() and not overwrite:
            # Another run created it while we were writing: never replace it without --overwrite.
            raise FileExistsError(f"{path} was created by another process meanwhile (pass --overwrite to replace it)")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=tag, suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            # Renamed before it is deleted: a run killed during the (long) rmtree must not leave a half-deleted
            # "x" that recover_stale_temps would put back once the user removes the new output.
            os.replace(old / "x", old / "replaced")
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
