"""Make Ultralytics behave on a machine with no internet.

Ultralytics reaches for the network in three places that matter to us: the Arial.ttf font used
when drawing labels, the AMP self-check on CUDA (it downloads yolo26n.pt), and weight/hub downloads.
:func:`prepare_ultralytics` is called by every stage before it touches Ultralytics, so none of those
hang or fail when offline. Set ``YOLO_FT_ONLINE=1`` to let Ultralytics download as usual.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
_DONE = False


def is_offline_mode() -> bool:
    """Offline unless the user opts in with YOLO_FT_ONLINE=1: a hung DNS lookup is worse than no download."""
    return os.environ.get("YOLO_FT_ONLINE", "").lower() not in {"1", "true", "yes"}


def fallback_font() -> Path | None:
    """A TrueType font that ships with matplotlib (DejaVu Sans), used instead of downloading Arial."""
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return p if p.is_file() else None
    except Exception:  # pragma: no cover - matplotlib is a dependency of ultralytics
        return None


def prepare_ultralytics() -> None:
    """Idempotently configure Ultralytics for offline use. Must run before ``import ultralytics``
    where possible (YOLO_OFFLINE is read at import time), and is safe to call again later."""
    global _DONE
    if _DONE:
        return
    offline = is_offline_mode()
    if offline:
        os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", os.environ.get("YOLO_VERBOSE", "True"))

    from ultralytics.utils import SETTINGS, checks

    if SETTINGS.get("sync", False):
        try:
            SETTINGS.update({"sync": False})
        except Exception:  # read-only settings file: harmless
            pass

    original_check_font = checks.check_font

    def check_font(font: str = "Arial.ttf"):
        """Use a local font when the requested one is missing instead of downloading it."""
        if offline:
            from ultralytics.utils import USER_CONFIG_DIR

            local = USER_CONFIG_DIR / Path(font).name
            if local.exists():
                return local
            fb = fallback_font()
            if fb is not None:
                log.debug("font %s not available offline; using %s", font, fb)
                return fb
        return original_check_font(font)

    checks.check_font = check_font
    # Modules that imported check_font by name keep their own reference: patch those too.
    import ultralytics.utils.plotting as plotting

    if hasattr(plotting, "check_font"):
        plotting.check_font = check_font

    if offline:
        _patch_amp_check()
    _patch_dataset_cache_write()
    _DONE = True


def _patch_dataset_cache_write() -> None:
    """Write Ultralytics' ``labels/*.cache`` atomically (temp file + rename).

    Its own writer checks ``path.exists()`` then unlinks and rewrites in place: two runs reading one dataset
    at once (``yolo-ft compare --parallel``, DDP workers) race, and the loser dies with FileNotFoundError on
    the unlink (seen in CI), or a reader loads a half-written file. Renaming a complete file is safe for both.
    """
    import numpy as np
    import ultralytics.data.dataset as dataset_mod
    import ultralytics.data.utils as data_utils
    from ultralytics.utils import LOGGER

    from yolo_ft.utils.atomic import atomic_output_file

    def save_dataset_cache_file(prefix: str, path: Path, x: dict, version: str) -> None:
        x["version"] = version
        path = Path(path)
        if not data_utils.is_dir_writeable(path.parent):
            LOGGER.warning(f"{prefix}Cache directory {path.parent} is not writable, cache not saved.")
            return
        try:
            with atomic_output_file(path) as tmp, open(tmp, "wb") as f:
                np.save(f, x)
            LOGGER.info(f"{prefix}New cache created: {path}")
        except Exception as e:  # a cache is an optimisation: warn and train on, as Ultralytics does
            LOGGER.warning(f"{prefix}Failed to save cache to {path}: {e}")

    data_utils.save_dataset_cache_file = save_dataset_cache_file
    dataset_mod.save_dataset_cache_file = save_dataset_cache_file  # imported there by name


def _patch_amp_check() -> None:
    """Skip the AMP self-check's download of yolo26n.pt when offline; AMP stays on (the default)."""
    import ultralytics.engine.trainer as trainer_mod
    from ultralytics.utils import WEIGHTS_DIR

    original = trainer_mod.check_amp

    def check_amp(model):
        if (WEIGHTS_DIR / "yolo26n.pt").is_file():
            return original(model)
        log.info("AMP check skipped: offline and yolo26n.pt is not in %s; AMP stays enabled", WEIGHTS_DIR)
        return True

    trainer_mod.check_amp = check_amp
