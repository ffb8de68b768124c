"""The export-time DFL form computes what Ultralytics' DFL computes, leaves no non-last-axis Softmax in the
graph, and is only in place during an export."""

from __future__ import annotations

import onnx
import pytest
import torch


def test_dfl_expectation_equals_ultralytics_dfl():
    from ultralytics.nn.modules.block import DFL

    from yolo_ft.export.fast_ops import dfl_expectation

    torch.manual_seed(0)
    dfl = DFL(16)
    for scale in (1.0, 10.0, 60.0):  # large logits: the max-subtraction keeps exp finite
        x = torch.randn(2, 64, 8400) * scale
        ref = dfl(x)
        got = dfl_expectation(dfl, x)
        assert got.shape == ref.shape == (2, 4, 8400)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-5)
    assert -1e-4 <= float(got.min()) and float(got.max()) <= 15 + 1e-4  # an expectation over bins 0..15


def test_patch_is_scoped_to_the_export():
    from ultralytics.nn.modules.block import DFL

    from yolo_ft.export.fast_ops import dfl_expectation, fast_export_ops

    original = DFL.forward
    with pytest.raises(RuntimeError):
        with fast_export_ops():
            assert DFL.forward is dfl_expectation
            raise RuntimeError("export failed")
    assert DFL.forward is original


def test_exported_graph_has_no_dfl_softmax(fp32_export):
    out, report, _ = fp32_export
    nodes = onnx.load(str(out)).graph.node
    dfl_ops = {n.op_type for n in nodes if "/dfl/" in n.name}
    assert "Softmax" not in dfl_ops and {"Exp", "ReduceSum"} <= dfl_ops
    # ... and the parity check against the unpatched PyTorch model still holds at fp32 tolerances.
    assert report["parity"]["passed"] and report["parity"]["max_conf_delta"] <= 1e-3
