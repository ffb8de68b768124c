"""Who produces and who reads each tensor of an ONNX graph: the two maps every graph rewrite starts from."""

from __future__ import annotations

from typing import Any


def producers(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it (graph inputs and initializers have none)."""
    return {o: n for n in graph.node for o in n.output}


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it, in graph order."""
    out: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            out.setdefault(t, []).append(n)
    return out
