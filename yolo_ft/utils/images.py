"""Opening images with Pillow's own opener, whatever else has been imported.

Once ``ultralytics`` is imported it replaces ``PIL.Image.open`` with a version that answers an
unidentified file by trying to install ``pi-heif`` — offline that is an ImportError instead of the
plain "not an image" we want to report to the user.
"""

from __future__ import annotations

import sys


def pil_open(fp):
    """``PIL.Image.open`` without Ultralytics' monkey-patch."""
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)(fp)
