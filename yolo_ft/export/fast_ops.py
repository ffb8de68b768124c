"""Export-time forms of Ultralytics modules that compute the same numbers but run faster in ONNX Runtime.

Why: YOLO's DFL box decoder is ``softmax`` over the 16 distance bins along axis 1 of a (B, 16, 4, A)
tensor, then a 1x1 conv with weights 0..15. ONNX Runtime's CPU Softmax on a non-last axis transposes
the tensor in and out, and that one node took 3.7-3.9 ms of YOLO11n's ~24 ms at 640 (15 %). The same
expectation written as max-subtract, exp and two sums over the bin axis costs ~0.4 ms. Only the exported
graph changes; the checkpoint is untouched, and the exporter's parity check still compares the ONNX model
with the unpatched PyTorch model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def dfl_expectation(self, x: torch.Tensor) -> torch.Tensor:
    """DFL.forward without a non-last-axis softmax: E[bin] = sum(i * e_i) / sum(e_i), e = exp(x - max)."""
    b, _, a = x.shape
    x = x.view(b, 4, self.c1, a)
    e = (x - x.amax(2, keepdim=True)).exp()
    bins = self.conv.weight.view(1, 1, self.c1, 1)  # 0..c1-1, the conv's fixed weights
    return ((e * bins).sum(2) / e.sum(2)).view(b, 4, a)


@contextmanager
def fast_export_ops() -> Iterator[None]:
    """Swap in the export-time forms for the duration of an export (restored even on error)."""
    from ultralytics.nn.modules.block import DFL

    original = DFL.forward
    DFL.forward = dfl_expectation
    try:
        yield
    finally:
        DFL.forward = original
