"""Reproducible, grouped train/val/test splits.

Groups are what must never straddle splits: images sharing a ``--group-by`` id (patient,
study), a reader-given group (e.g. a DICOM series), or a near-duplicate component (pHash
within a few bits: neighbouring CT slices). Whole groups are dealt to the split furthest below
its target, in an order fixed by the seed, so the same inputs and seed give the same split on
any machine and independent of the order files were listed.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yolo_ft.prepare.phash import DEFAULT_THRESHOLD, UnionFind, near_pairs
from yolo_ft.records import YoloFtError

SPLITS = ("train", "val", "test")


def parse_split(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or 2 values, test = 0) → fractions summing to 1."""
    if isinstance(value, str):
        try:
            parts = [float(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise YoloFtError(f"--split must be comma-separated numbers like 0.8,0.1,0.1, got {value!r}") from None
    else:
        parts = [float(p) for p in value]
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0 or parts[0] <= 0:
        raise YoloFtError(f"--split needs 2 or 3 non-negative fractions with train > 0, got {value!r}")
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


@dataclass
class NearDupStats:
    """How near-duplicates relate to the splits (filled when a split is kept or made)."""

    threshold: int
    pairs: int = 0
    components: int = 0
    largest_component: int = 0
    with_twin_in_other_split: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[tuple[str, str]] = field(default_factory=list)


def group_ids(
    names: Sequence[str],
    reader_groups: Sequence[str | None],
    hashes: Sequence[int | None] | None,
    *,
    group_by: str | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    splits: Sequence[str | None] | None = None,
    display: Sequence[str] | None = None,
) -> tuple[list[int], NearDupStats, int]:
    """Group id (an index) per image, near-duplicate stats, and how many names missed ``group_by``.

    ``splits`` (the source split, when kept) is only used to count images that have a near-twin
    in another split — the leak a kept split carries.
    """
    n = len(names)
    uf = UnionFind(n)
    unmatched = 0
    if group_by:
        try:
            rx = re.compile(group_by)
        except re.error as e:
            raise YoloFtError(f"--group-by is not a valid regular expression: {e}") from None
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            m = rx.search(name)
            if m is None:
                unmatched += 1
                continue
            key = m.group(1) if rx.groups else m.group(0)
            uf.union(first.setdefault(f"re:{key}", i), i)
    first_rg: dict[str, int] = {}
    for i, g in enumerate(reader_groups):
        if g is not None:
            uf.union(first_rg.setdefault(str(g), i), i)
    stats = NearDupStats(threshold=threshold)
    if hashes is not None:
        twin: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        nd = UnionFind(n)
        for i, j in near_pairs(hashes, threshold):
            stats.pairs += 1
            uf.union(i, j)
            nd.union(i, j)
            if splits is not None and splits[i] != splits[j] and splits[i] and splits[j]:
                twin[splits[i]][splits[j]].add(i)
                twin[splits[j]][splits[i]].add(j)
                if len(stats.examples) < 20:
                    a, b = (display or names)[i], (display or names)[j]
                    stats.examples.append((a, b))
        sizes = Counter(nd.find(i) for i in range(n) if hashes[i] is not None)
        stats.components = sum(1 for s in sizes.values() if s > 1)
        stats.largest_component = max(sizes.values(), default=0)
        stats.with_twin_in_other_split = {
            s: {o: len(idx) for o, idx in sorted(d.items())} for s, d in sorted(twin.items())
        }
    return [uf.find(i) for i in range(n)], stats, unmatched


def assign_splits(
    keys: Sequence[str], groups: Sequence[int], fractions: tuple[float, float, float], seed: int
) -> list[str]:
    """Deal whole groups to splits: each group goes to the split furthest below its target.

    ``keys`` (stable per-image strings such as relative paths) order the groups before the seeded
    shuffle, so the result depends only on the files and the seed.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    group_list = sorted(members.values(), key=lambda idx: min(keys[i] for i in idx))
    rng = random.Random(seed)
    rng.shuffle(group_list)
    total = len(keys)
    counts = [0, 0, 0]
    out = [""] * total
    for idx in group_list:
        deficits = [fractions[s] * total - counts[s] for s in range(3)]
        best = max(range(3), key=lambda s: (deficits[s] if fractions[s] > 0 else float("-inf"), -s))
        counts[best] += len(idx)
        for i in idx:
            out[i] = SPLITS[best]
    return out


def group_straddles(groups: Sequence[int], splits: Sequence[str]) -> int:
    """Number of groups whose images fall in more than one split."""
    seen: dict[int, set[str]] = defaultdict(set)
    for g, s in zip(groups, splits):
        seen[g].add(s)
    return sum(1 for v in seen.values() if len(v) > 1)


def display_name(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
