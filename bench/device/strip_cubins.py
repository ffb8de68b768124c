"""Shrink a CUDA shared library for one GPU architecture by zeroing the machine code of every other one.

Why: onnxruntime-gpu's CUDA provider (``libonnxruntime_providers_cuda.so``, 284 MB) carries cubins for every
NVIDIA architecture; the device tool carries at most 64 MiB per call. Zeroing the payloads of cubins built
for other architectures keeps the file's layout (offsets, sizes, symbols) intact, and xz then compresses the
zeros away. PTX entries are kept, so a kernel with no cubin for the target can still be JIT-compiled.
Only the device's GPU can run the result: never ship it.

    python bench/device/strip_cubins.py IN.so OUT.so.xz --arch 90

Fatbin layout (the ``.nv_fatbin`` ELF section; several fatbins may follow each other):
  header  : u32 magic 0xBA55ED50, u16 version, u16 header size, u64 size of the entries that follow
  entries : u16 kind (1 PTX, 2 ELF cubin), u16 version, u32 header size, u64 payload size, ...,
            u32 arch at offset 28 (e.g. 90 for sm_90); the payload follows the entry header.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import struct
from collections import Counter
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KIND_PTX, KIND_ELF = 1, 2


def _section(data: bytes | bytearray, name: bytes) -> tuple[int, int]:
    """(offset, size) of a named section of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    str_off, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        base = shoff + i * shentsize
        name_off, = struct.unpack_from("<I", data, base)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off:end] == name:
            off, size = struct.unpack_from("<QQ", data, base + 0x18)
            return off, size
    raise ValueError(f"no {name.decode()} section")


def entries(data: bytes | bytearray, start: int, size: int):
    """Yield (kind, arch, payload offset, payload size) for every entry of every fatbin in the section."""
    pos, end = start, start + size
    while pos + 16 <= end:
        magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:  # padding between fatbins
            pos += 8
            continue
        e, e_end = pos + hsize, pos + hsize + fsize
        while e + 32 <= e_end:
            kind, _v, ehsize, psize = struct.unpack_from("<HHIQ", data, e)
            arch, = struct.unpack_from("<I", data, e + 28)
            if ehsize == 0:
                break
            yield kind, arch, e + ehsize, psize
            e += ehsize + psize
        pos = e_end


def strip(data: bytearray, arch: int) -> Counter:
    """Zero every ELF cubin payload not built for ``arch``, in place; counts of what was kept and zeroed."""
    start, size = _section(data, b".nv_fatbin")
    seen: Counter = Counter()
    for kind, a, off, n in list(entries(data, start, size)):
        if kind == KIND_ELF and a != arch:
            data[off:off + n] = bytes(n)
            seen[f"zeroed sm_{a}"] += 1
        else:
            seen[f"kept {'PTX' if kind == KIND_PTX else 'cubin'} sm_{a}"] += 1
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path, help="written xz-compressed when it ends in .xz")
    ap.add_argument("--arch", type=int, default=90, help="SM version to keep (90: H100/H200)")
    args = ap.parse_args()
    data = bytearray(args.src.read_bytes())
    src_hash = hashlib.sha256(bytes(data)).hexdigest()[:12]
    seen = strip(data, args.arch)
    if not any(k.startswith("kept cubin") for k in seen):
        raise SystemExit(f"{args.src}: no sm_{args.arch} cubin found; refusing to write a library that cannot run")
    out = lzma.compress(bytes(data), preset=6) if args.dst.suffix == ".xz" else bytes(data)
    args.dst.write_bytes(out)
    print(f"{args.src.name} ({src_hash}): {dict(sorted(seen.items()))}; wrote {args.dst} ({len(out) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
