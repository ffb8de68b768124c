"""prepare() end to end on the real KSSD2025 mask subset: a non-YOLO reader, no source split.

Found while building this: images 735–740 are byte-identical to 729–734 (their masks differ),
an anomaly SOURCE.md does not list. Strict mode must name all six; --skip-invalid drops them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yolo_ft.prepare import prepare
from yolo_ft.records import InvalidDatasetError


def test_masks_duplicates_and_grouped_split(shared_datasets: Path, tmp_path: Path) -> None:
    data = shared_datasets / "kssd2025-kidney-stone-masks" / "data"
    with pytest.raises(InvalidDatasetError) as e:
        prepare(data / "image", tmp_path / "strict", masks=data / "label")
    got = sorted((Path(p.file).name, Path(p.problem.rsplit(" ", 1)[-1]).name) for p in e.value.problems)
    assert got == [(f"{735 + k}.tif", f"{729 + k}.tif") for k in range(6)]
    assert not (tmp_path / "strict").exists()

    report = prepare(data / "image", tmp_path / "out", masks=data / "label", skip_invalid=True, seed=0)
    assert report["format"] == "masks"
    assert sum(report["images"].values()) == 315
    assert report["split"]["mode"] == "grouped" and report["split"]["straddling_groups"] == 0
    assert report["images"]["train"] > report["images"]["val"] > 0
    assert report["files"]["linked"] + report["files"]["copied"] == 315  # TIFFs linked/copied, not re-encoded
    assert (tmp_path / "out/images/train").iterdir().__next__().suffix == ".tif"
