"""Replay the regression corpus: the worst generated cases, kept as plain files in corpus/<format>/<case>/.

Each case folder holds the source files and ``case.json`` (format, reader options, a note on why it
is there, and fragments the reported problems must contain). Cases come from the fuzzers (any crash
bench/bench_fuzz.py finds is saved here with ``--save-crashes``) and from hand-picked hostile inputs
(``reliability_fuzz.curated_cases``; ``bench/bench_fuzz.py --write-corpus`` rewrites them).
Every case must satisfy the same property as the fuzz tests, and must be *reported*, not silently
accepted: the expected fragments must appear in the problems naming its files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import reliability_fuzz as rf

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted(p.parent for p in CORPUS.glob("*/*/case.json"))


def test_corpus_covers_every_reader() -> None:
    assert {c.parent.name for c in CASES} == set(rf.FORMATS)


@pytest.mark.timeout(120)  # the YAML alias bomb once took minutes: a hang is a failure
@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_corpus_case(case: Path) -> None:
    files, meta = rf.load_case_dir(case)
    options = rf.options_from_json(meta["options"])
    with tempfile.TemporaryDirectory(prefix="corpus-") as td:
        result = rf.check_case(Path(td), meta["format"], files, options)
    assert not result["failures"], "\n".join(result["failures"])
    reported = result["problems"] + result["prepare_problems"]
    text = " | ".join(f"{Path(f).name}: {p}" for f, p in reported) + " | " + result["outcome"]
    for fragment in meta["expect_problems"]:
        assert fragment in text, f"{case.name}: expected {fragment!r} in the reported problems: {text[:2000]}"
    if meta["expect_problems"]:
        assert "invalid" in result["outcome"] or "error" in result["outcome"], result["outcome"]
