"""The one record every reader yields, and the problem type every stage reports.

Readers only parse: they turn one source format into :class:`Record` objects (or
:class:`Problem` objects for what they could not parse). Validation, splitting and writing
are shared, so a new format is one new reader module.

Boxes are in **pixels, xyxy**, in the coordinate frame of the image as stored on disk
(after any EXIF orientation the annotation tool applied; readers say which via ``exif_transposed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Box:
    """One labelled box in pixel xyxy coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass
class Record:
    """One image and its boxes, as parsed from a source.

    ``annotated`` says whether the source format positively states that this image was
    annotated; an image with ``annotated=True`` and no boxes is a negative (background)
    sample, one with ``annotated=False`` is reported as "image with no annotation entry".
    """

    image: Path
    boxes: list[Box] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    source: Path | None = None
    split: str | None = None
    group: str | None = None
    annotated: bool = True
    exif_transposed: bool = True
    # Optional pre-decoded pixels for formats whose images are not plain files (DICOM, 16-bit CT):
    # a callable returning an encoded PNG/JPEG byte string the writer stores instead of linking.
    render: object | None = None
    render_suffix: str | None = None

    def labels(self) -> list[str]:
        return [b.label for b in self.boxes]


@dataclass(frozen=True)
class Problem:
    """A problem with one input file, reported with the file and a plain-language reason."""

    file: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


class YoloFtError(Exception):
    """An error the user can act on; the CLI prints it without a traceback and exits non-zero."""


class InvalidDatasetError(YoloFtError):
    """Raised in strict mode when a source has problems; nothing has been written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"{len(problems)} problem(s) found; nothing was written "
            f"(use --skip-invalid to write the dataset without the bad samples):\n{lines}{more}"
        )
