"""Which int8 SiLU form an export writes (int8_rewrites.silu_plan) follows the CPU's int8 dot-product
instructions, read from /proc/cpuinfo (utils.cpu); explicit modes override it."""

from __future__ import annotations

import pytest

from yolo_ft.export.int8_rewrites import QUICKGELU_MAX_ELEMENTS, silu_plan
from yolo_ft.utils.cpu import cpu_flags, int8_dot_product

EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n\nprocessor\t: 1\n"
XEON = "processor\t: 0\nflags\t\t: fpu sse avx avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n"


@pytest.mark.parametrize("text,flag", [(EPYC, ""), (XEON, "avx512_vnni"), (ARM, "asimddp"), ("processor : 0\n", None)])
def test_int8_dot_product_is_read_from_cpuinfo(tmp_path, text, flag):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert int8_dot_product(info) == flag
    assert cpu_flags(tmp_path / "missing") is None and int8_dot_product(tmp_path / "missing") is None


def test_silu_plan_by_cpu_and_by_request():
    assert silu_plan("auto", dot_product="")[0] == 0  # AVX2 only: lookups everywhere
    assert "no int8 dot-product" in silu_plan("auto", dot_product="")[1]
    assert silu_plan("auto", dot_product="avx512_vnni") == (
        QUICKGELU_MAX_ELEMENTS, f"auto: this CPU has avx512_vnni; QuickGelu on maps up to {QUICKGELU_MAX_ELEMENTS} elements")
    assert silu_plan("auto", dot_product=None)[0] in (0, QUICKGELU_MAX_ELEMENTS)  # this machine, whatever it is
    assert silu_plan("lookup", dot_product="avx512_vnni")[0] == 0
    assert silu_plan("quickgelu", dot_product="")[0] == QUICKGELU_MAX_ELEMENTS
    with pytest.raises(ValueError, match="choose one of auto, lookup, quickgelu"):
        silu_plan("fast")


def test_export_refuses_an_unknown_silu_mode_before_any_work(tmp_path, export_model):
    from yolo_ft.export.onnx import export
    from yolo_ft.records import YoloFtError

    with pytest.raises(YoloFtError, match="int8 SiLU mode 'fast'"):
        export(export_model, tmp_path / "m.onnx", int8_silu="fast")
    assert list(tmp_path.iterdir()) == []
