"""Path safety: every path read from an annotation file is resolved inside a root or refused.

Annotation files are untrusted input. A ``file_name`` of ``../../etc/passwd``, an absolute path,
or a symlink pointing out of the dataset must never make us read (or write) outside the root.
"""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(ValueError):
    """A path from an annotation escapes its root (``..``, absolute, or a symlink leaving it)."""


def resolve_inside(root: str | os.PathLike, relative: str, *, what: str = "path") -> Path:
    """Resolve ``relative`` under ``root``; raise :class:`UnsafePathError` if it escapes.

    Absolute paths and ``..`` components are refused outright (even if they would land back
    inside), and the fully resolved path (symlinks followed) must stay under the resolved root.
    """
    if not isinstance(relative, str) or not relative:
        raise UnsafePathError(f"empty or non-string {what}: {relative!r}")
    if "\x00" in relative:
        raise UnsafePathError(f"{what} contains a NUL byte: {relative!r}")
    norm = relative.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafePathError(f"absolute {what} not allowed: {relative!r}")
    if any(part == ".." for part in norm.split("/")):
        raise UnsafePathError(f"{what} escapes the source root with '..': {relative!r}")
    root_resolved = Path(root).resolve()
    candidate = (root_resolved / norm).resolve()
    if not is_within(candidate, root_resolved):
        raise UnsafePathError(f"{what} resolves outside the source root (symlink?): {relative!r}")
    return Path(root_resolved / norm)


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True if ``path`` (resolved) is ``root`` (resolved) or below it."""
    p = Path(path).resolve()
    r = Path(root).resolve()
    return p == r or r in p.parents


def check_no_escape(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Raise :class:`UnsafePathError` if a file found by walking ``root`` is a symlink leaving it."""
    if not is_within(path, root):
        raise UnsafePathError(f"{path} is a symlink that leaves the source root {root}")
