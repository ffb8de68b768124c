"""What the CPU can do that changes which int8 graph runs fastest on it (read from /proc/cpuinfo)."""

from __future__ import annotations

from pathlib import Path

# Instructions that multiply-accumulate int8 directly (x86 VNNI / AMX, Arm dot product): with them ONNX
# Runtime's int8 convolutions run ~3x faster than float ones, without them ~1.7x.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The feature flags of the first CPU listed (x86 ``flags``, Arm ``Features``); None where unreadable."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def int8_dot_product(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first int8 dot-product flag this CPU has, "" when it has none, None when that cannot be told."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return next((f for f in INT8_DOT_FLAGS if f in flags), "")
