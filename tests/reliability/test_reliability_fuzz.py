"""Every reader, fed generated hostile annotation files, reports problems per file and never crashes.

Hypothesis builds sources from valid templates with a few fields replaced by hostile values (wrong
types, missing keys, NaN/inf/negative/huge numbers, unicode, 5 000-deep nesting, duplicated ids,
boxes outside the image, ``../``/absolute/symlinked image paths, XML entity bombs and external
entities, YAML python tags and alias bombs, truncated/BOM/UTF-16/invalid-UTF-8 bytes, corrupt
images and masks, broken DICOM headers). For each case the property of
:func:`reliability_fuzz.check_case` must hold: reader never raises and names the file of every
problem; ``prepare`` writes a valid dataset or raises a YoloFtError and writes nothing; nothing
outside the source root reaches the output; no data file runs code.

Budget: ``RELIABILITY_FUZZ_EXAMPLES`` per reader (default 100); bench/bench_fuzz.py runs thousands.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import reliability_fuzz as rf

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "100"))


@pytest.mark.parametrize("fmt", rf.FORMATS)
def test_reader_and_prepare_never_crash_on_generated_files(fmt: str) -> None:
    seen = {"cases": 0, "problems": 0, "written": 0}

    def on_case(files, options, result):
        seen["cases"] += 1
        seen["problems"] += len(result["problems"])
        seen["written"] += "written" in result["outcome"]
        assert not result["failures"], "\n".join(result["failures"])

    body = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))(rf.run_strategy(fmt, on_case))
    body()
    # The generator must reach both sides of the property, or the test proves little.
    assert seen["cases"] >= EXAMPLES // 2
    assert seen["problems"] > 0, f"{fmt}: no generated case was reported as a problem"
    assert seen["written"] > 0, f"{fmt}: no generated case was valid enough to be written"
