"""A validated image, kept compactly between reading and writing (no pixels, few objects).

Splitting needs every image's group, split and hash before anything is written, so one entry per
image stays in memory. A :class:`~yolo_ft.records.Record` with Path objects and Box dataclasses
costs ~5 KB; a Sample with slots, str paths, a packed float array and label ids ~0.6 KB, so
100k images fit in well under 100 MB.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

from yolo_ft.records import Box, Problem, Record


class LabelTable:
    """Interns class names: samples store small ints instead of strings."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def id(self, name: str) -> int:
        i = self._ids.get(name)
        if i is None:
            i = self._ids[name] = len(self.names)
            self.names.append(name)
        return i


@dataclass(slots=True)
class Sample:
    image: str
    source: str | None
    split: str | None
    group: str | None
    width: int
    height: int
    coords: array  # x1, y1, x2, y2 per box, flat
    labels: bytes | tuple[int, ...]  # ids into the LabelTable
    digest: bytes | None
    nbytes: int | None
    phash: int | None
    render: object | None
    render_suffix: str | None
    problems: list[Problem] | None  # None when ok
    notes: list[Problem] | None

    @classmethod
    def from_checked(cls, checked, table: LabelTable) -> Sample:
        r: Record = checked.record
        coords = array("d")
        ids = []
        for b in r.boxes:
            coords.extend((b.x1, b.y1, b.x2, b.y2))
            ids.append(table.id(b.label))
        labels: bytes | tuple[int, ...] = bytes(ids) if all(i < 256 for i in ids) else tuple(ids)
        return cls(
            image=str(r.image), source=str(r.source) if r.source is not None else None, split=r.split,
            group=None if r.group is None else str(r.group), width=r.width or 0, height=r.height or 0,
            coords=coords, labels=labels, digest=bytes.fromhex(checked.digest) if checked.digest else None,
            nbytes=checked.nbytes, phash=checked.phash, render=r.render, render_suffix=r.render_suffix,
            problems=list(checked.problems) or None, notes=list(checked.notes) or None,
        )

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_boxes(self) -> int:
        return len(self.labels)

    def add_problem(self, p: Problem) -> None:
        if self.problems is None:
            self.problems = []
        self.problems.append(p)

    def label_names(self, table: LabelTable) -> list[str]:
        return [table.names[i] for i in self.labels]

    def to_record(self, table: LabelTable) -> Record:
        """A transient Record for the writer."""
        c = self.coords
        boxes = [Box(c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3], table.names[lid])
                 for k, lid in enumerate(self.labels)]
        return Record(image=Path(self.image), boxes=boxes, width=self.width, height=self.height,
                      source=Path(self.source) if self.source else None, split=self.split, group=self.group,
                      render=self.render, render_suffix=self.render_suffix)
