"""The runtime's letterbox, rescaling and NMS equal Ultralytics' own functions, shape by shape and box by
box (Ultralytics is the reference here; the runtime itself never imports it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from yolo_ft.runtime import letterbox, letterbox_params, letterbox_to_blob, non_max_suppression, scale_boxes, to_blob
from yolo_ft.runtime import nms as nms_module


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 1400), w=st.integers(1, 1400), size=st.sampled_from([64, 128, 320, 640]),
       auto=st.booleans())
def test_letterbox_equals_ultralytics(h, w, size, auto):
    from ultralytics.data.augment import LetterBox

    img = np.random.default_rng(h * 7 + w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ref = LetterBox((size, size), auto=auto, stride=32)(image=img.copy())
    got, _ = letterbox(img, (size, size), auto=auto, stride=32)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 1400), w=st.integers(1, 1400), size=st.sampled_from([64, 320, 640]), auto=st.booleans())
def test_letterbox_to_blob_equals_ultralytics_preprocessing(h, w, size, auto):
    """Straight into the model input: Ultralytics' LetterBox, BGR->RGB, CHW, / 255, bit for bit, padding
    included, whatever was in the slot before (and the thread's scratch arrays from the last image)."""
    from ultralytics.data.augment import LetterBox

    img = np.random.default_rng(h * 5 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxed = LetterBox((size, size), auto=auto, stride=32)(image=img.copy())
    ref = torch.from_numpy(boxed[..., ::-1].transpose(2, 0, 1).copy()).float() / 255
    p = letterbox_params((h, w), (size, size), auto=auto)
    assert p.padded_hw == boxed.shape[:2]
    out = np.full((3, *p.padded_hw), np.nan, np.float32)
    assert letterbox_to_blob(img, (size, size), out, auto=auto) == p
    np.testing.assert_array_equal(out, ref.numpy())
    half = np.full((3, *p.padded_hw), np.nan, np.float16)  # an fp16 model's input: float16(x / 255), one pass
    letterbox_to_blob(img, (size, size), half, auto=auto)
    np.testing.assert_array_equal(half, ref.numpy().astype(np.float16))


def test_letterbox_to_blob_refuses_a_slot_of_the_wrong_shape_and_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    img = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"needs float32 or float16 \(3, 64, 64\)"):
        letterbox_to_blob(img, (64, 64), np.empty((3, 64, 48), np.float32))
    with pytest.raises(ValueError, match="needs float32"):
        letterbox_to_blob(img, (64, 64), np.empty((3, 64, 64), np.float64))
    # threads each resize their own images through their own scratch arrays at the same time
    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, (rng.integers(50, 400), rng.integers(50, 400), 3), dtype=np.uint8) for _ in range(48)]
    want = [to_blob([letterbox(im, (160, 160))[0]])[0] for im in ims]

    def one(k: int) -> np.ndarray:
        out = np.empty((3, 160, 160), np.float32)
        letterbox_to_blob(ims[k], (160, 160), out)
        return out

    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            for got, ref in zip(pool.map(one, range(len(ims))), want):
                np.testing.assert_array_equal(got, ref)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(8, 1400), w=st.integers(8, 1400), size=st.sampled_from([64, 320, 640]), auto=st.booleans())
def test_scale_boxes_equals_ultralytics(h, w, size, auto):
    from ultralytics.utils.ops import scale_boxes as ul_scale_boxes

    boxed, _ = letterbox(np.zeros((h, w, 3), np.uint8), (size, size), auto=auto)
    in_hw = boxed.shape[:2]
    rng = np.random.default_rng(h + w)
    xy = rng.uniform(-10, max(in_hw) + 10, (20, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0, 100, (20, 2)).astype(np.float32)], 1)
    ref = ul_scale_boxes(in_hw, torch.from_numpy(boxes.copy()), (h, w)).numpy()
    got = scale_boxes(boxes.copy(), in_hw, (h, w))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-4)


def test_to_blob_equals_ultralytics_preprocessing():
    """Every uint8 value, every channel: RGB, CHW, and bit-identical to ``torch ... .float() / 255``."""
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(2)]
    ims[0][0, :, 0] = np.arange(53) * 5  # covers 0..255 in steps, plus the random rest
    ims[0][1, :3] = [[0, 0, 0], [255, 255, 255], [1, 254, 128]]
    got = to_blob(ims)
    ref = torch.from_numpy(np.stack([im[..., ::-1].transpose(2, 0, 1).copy() for im in ims])).float() / 255
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (2, 3, 37, 53)
    np.testing.assert_array_equal(got, ref.numpy())
    assert to_blob(ims, np.float16).dtype == np.float16
    buf = np.full((2, 3, 37, 53), np.nan, np.float32)
    assert to_blob(ims, out=buf) is buf  # a matching buffer is filled in place, every element written
    np.testing.assert_array_equal(buf, ref.numpy())
    other = to_blob(ims[:1], out=buf)  # a buffer of another shape is not used
    assert other is not buf and other.shape == (1, 3, 37, 53)
    np.testing.assert_array_equal(other, ref.numpy()[:1])


@pytest.mark.parametrize("n", [300, 2000])  # 300: NMS through the pairwise-IoU matrix; 2000: the per-box loop
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conf,iou,max_det", [(0.25, 0.7, 300), (0.001, 0.45, 300), (0.05, 0.7, 10)])
def test_nms_equals_ultralytics(seed, conf, iou, max_det, n):
    """Clustered random boxes over 3 classes: overlapping same-class boxes must be suppressed exactly as
    Ultralytics does (class-aware, conf on the best class, max_det cap)."""
    from ultralytics.utils.nms import non_max_suppression as ul_nms

    rng = np.random.default_rng(seed)
    nc = 3
    centers = rng.uniform(50, 590, (12, 2))
    c = centers[rng.integers(0, 12, n)] + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(20, 120, (n, 2))
    scores = rng.uniform(0, 1, (n, nc)) ** 3
    pred = np.concatenate([c, wh, scores], 1).T[None].astype(np.float32)  # (1, 4 + nc, n)
    ref = ul_nms(torch.from_numpy(pred.copy()), conf, iou, max_det=max_det)[0].numpy()
    got = non_max_suppression(pred[0], conf, iou, max_det)
    assert got.shape == ref.shape and len(ref) > 0
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-4)


def test_nms_matrix_and_loop_paths_agree(monkeypatch):
    """The pairwise-matrix path and the per-box loop keep the same boxes in the same order."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (400, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (400, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    scores[:10] = scores[10]  # ties: the stable order must decide alike
    boxes[20:30, 2] = boxes[20:30, 0]  # zero-area boxes: IoU 0/0 suppresses nothing, as in torchvision
    for thr in (0.3, 0.5, 0.7):
        matrix = nms_module.nms_indices(boxes, scores, thr)
        monkeypatch.setattr(nms_module, "MATRIX_MAX", 0)
        loop = nms_module.nms_indices(boxes, scores, thr)
        monkeypatch.undo()
        assert 0 < len(matrix) < 400
        np.testing.assert_array_equal(matrix, loop)
        ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(np.sort(matrix), np.sort(ref))
