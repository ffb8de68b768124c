"""Make the shared fuzz helpers importable (tests/<area> folders have no __init__.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
