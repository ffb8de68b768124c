"""bench/device/strip_cubins.py on a synthetic ELF: other architectures' cubins zeroed, sm_90's and PTX kept,
the layout (size, offsets) untouched. A wrong parse would waste a GPU session on a library that cannot load."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("strip_cubins", REPO / "bench/device/strip_cubins.py")
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)


def _entry(kind: int, arch: int, payload: bytes) -> bytes:
    head = struct.pack("<HHIQ", kind, 1, 64, len(payload)) + bytes(12) + struct.pack("<I", arch) + bytes(32)
    assert len(head) == 64
    return head + payload


def _fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", sc.FATBIN_MAGIC, 1, 16, len(body)) + body


def _elf(section: bytes) -> bytes:
    """ELF64 LE: header, the fatbin section's bytes, .shstrtab, then 3 section headers (null, shstrtab, fatbin)."""
    names = b"\0.shstrtab\0.nv_fatbin\0"
    fat_off = 64
    str_off = fat_off + len(section)
    sh_off = str_off + len(names)
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x28, sh_off)
    struct.pack_into("<HHH", hdr, 0x3A, 64, 3, 1)

    def sh(name: int, off: int, size: int) -> bytes:
        b = bytearray(64)
        struct.pack_into("<I", b, 0, name)
        struct.pack_into("<QQ", b, 0x18, off, size)
        return bytes(b)

    return bytes(hdr) + section + names + sh(0, 0, 0) + sh(1, str_off, len(names)) + sh(11, fat_off, len(section))


def test_only_other_architectures_cubins_are_zeroed():
    p75, p90, ptx, p90b = b"\x75" * 40, b"\x90" * 24, b"ptx-source" * 3, b"\x91" * 8
    section = _fatbin(_entry(2, 75, p75), _entry(2, 90, p90), _entry(1, 75, ptx)) + bytes(8) + _fatbin(_entry(2, 90, p90b))
    data = bytearray(_elf(section))
    before = bytes(data)
    seen = sc.strip(data, 90)
    assert seen == {"zeroed sm_75": 1, "kept cubin sm_90": 2, "kept PTX sm_75": 1}
    assert len(data) == len(before)
    assert p75 not in data and p90 in data and p90b in data and ptx in data
    changed = [i for i in range(len(data)) if data[i] != before[i]]
    assert len(changed) == len(p75)  # exactly the sm_75 payload, nothing else


def test_not_an_elf_file_is_refused():
    with pytest.raises(ValueError, match="ELF"):
        sc.strip(bytearray(b"MZ" + bytes(100)), 90)
