"""Which start checkpoint to train from, offline first.

Order: an explicit existing path; a usual Ultralytics name (``yolo11n.pt``, ...) found in a local
weights folder; a download, only when the user opted in to the network (``YOLO_FT_ONLINE=1``);
and for ``yolo11n.pt`` (or no spec) the COCO-pretrained YOLO11n bundled with the package, which
was rebuilt from an ONNX export by :func:`import_onnx_weights` (see ``yolo_ft/assets/PROVENANCE.md``).
Nothing here touches the network unless online mode is on, so an offline run can never hang.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from yolo_ft.records import YoloFtError
from yolo_ft.train.onnx_import import compare_with_onnx, import_onnx_weights  # re-exported API
from yolo_ft.utils.ultralytics_env import is_offline_mode

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_NAME = "yolo11n_coco.pt"
# Names that mean "the standard COCO YOLO11n": the bundled checkpoint is an equivalent of these.
BUNDLED_ALIASES = {"yolo11n.pt"}

__all__ = ["bundled_weights", "compare_with_onnx", "import_onnx_weights", "resolve_weights", "weights_dirs"]


def bundled_weights() -> Path:
    """The COCO-pretrained YOLO11n that ships with yolo-ft (fp16 Ultralytics checkpoint)."""
    p = ASSETS_DIR / BUNDLED_NAME
    if not p.is_file():
        raise YoloFtError(f"bundled checkpoint missing: {p} (reinstall yolo-ft or rebuild it with `yolo-ft weights import`)")
    return p


def weights_dirs(weights_dir: Path | None = None) -> list[Path]:
    """Folders searched for a named checkpoint, in order: the argument, $YOLO_FT_WEIGHTS_DIR,
    Ultralytics' ``weights_dir`` setting, the current directory."""
    dirs: list[Path] = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    env = os.environ.get("YOLO_FT_WEIGHTS_DIR")
    if env:
        dirs.append(Path(env))
    ul = _ultralytics_weights_dir()
    if ul is not None:
        dirs.append(ul)
    dirs.append(Path.cwd())
    seen, out = set(), []
    for d in dirs:
        key = str(d.expanduser().resolve())
        if key not in seen:
            seen.add(key)
            out.append(d.expanduser())
    return out


def _ultralytics_weights_dir() -> Path | None:
    """Ultralytics' configured weights folder, read without importing all of Ultralytics' heavy parts."""
    try:
        from yolo_ft.utils.ultralytics_env import prepare_ultralytics

        prepare_ultralytics()  # before Ultralytics' import so it reads YOLO_OFFLINE
        from ultralytics.utils import SETTINGS

        return Path(SETTINGS["weights_dir"])
    except Exception:  # settings unreadable: just skip that folder
        return None


def _looks_like_name(spec: str) -> bool:
    """A bare file name (``yolo11s.pt``) rather than a path the user meant literally."""
    return Path(spec).name == spec and not spec.startswith(".")


def resolve_weights(spec: str | os.PathLike | None, *, weights_dir: Path | None = None) -> Path:
    """Turn ``--weights`` into an existing checkpoint file; see the module docstring for the order.

    Raises YoloFtError naming the missing file and where to put it when nothing fits.
    """
    if spec is None or str(spec).strip() == "":
        log.info("no --weights given: using the bundled COCO-pretrained YOLO11n (%s)", bundled_weights())
        return bundled_weights()
    spec = str(spec).strip()
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    if not _looks_like_name(spec):
        raise YoloFtError(f"weights file not found: {p}")
    dirs = weights_dirs(weights_dir)
    for d in dirs:
        cand = d / spec
        if cand.is_file():
            return cand
    if not is_offline_mode():
        return _download(spec, dirs[0])
    if spec in BUNDLED_ALIASES:
        log.info(
            "%s not found in %s and offline (set YOLO_FT_ONLINE=1 to download): using the bundled "
            "COCO-pretrained YOLO11n %s instead",
            spec,
            ", ".join(map(str, dirs)),
            bundled_weights(),
        )
        return bundled_weights()
    raise YoloFtError(
        f"weights {spec!r} not found and offline: put {spec} in one of {', '.join(map(str, dirs))} "
        f"(or set YOLO_FT_WEIGHTS_DIR to its folder), pass its full path, set YOLO_FT_ONLINE=1 to download it, "
        f"or use --weights yolo11n.pt for the bundled COCO YOLO11n"
    )


def _download(name: str, dest_dir: Path) -> Path:
    """Online only: let Ultralytics fetch its release asset into ``dest_dir``."""
    from yolo_ft.utils.ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.utils.downloads import attempt_download_asset

    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(attempt_download_asset(dest_dir / name))
    except Exception as e:
        raise YoloFtError(f"could not download {name}: {e}") from e
    if not got.is_file():
        raise YoloFtError(f"could not download {name} (not an Ultralytics release asset?)")
    return got
