"""bf16 text inference where the CPU has it, fp32 elsewhere: both paths run and agree."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal.models import speed

CAPTIONS = ["a dog runs on the beach", "two people riding bicycles along a road", "snow"]


@pytest.fixture
def bf16_setting(monkeypatch):
    """Set CROSSMODAL_BF16 for one test; the cached answer is dropped before and after."""
    def choose(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("CROSSMODAL_BF16", raising=False)
        else:
            monkeypatch.setenv("CROSSMODAL_BF16", value)
        speed.cpu_has_bf16.cache_clear()

    yield choose
    speed.cpu_has_bf16.cache_clear()


def test_bf16_follows_the_cpu_flags_unless_forced(bf16_setting, tmp_path, monkeypatch):
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not speed.cpuinfo_has_bf16(avx2_only)
    assert speed.cpuinfo_has_bf16(sapphire)
    assert not speed.cpuinfo_has_bf16(tmp_path / "unreadable")
    for cpuinfo, native in ((avx2_only, False), (sapphire, True)):
        monkeypatch.setattr(speed, "CPUINFO", cpuinfo)
        bf16_setting(None)
        assert speed.cpu_has_bf16() is native
        bf16_setting("0")
        assert speed.cpu_has_bf16() is False
        bf16_setting("1")
        assert speed.cpu_has_bf16() is True


def test_vnni_is_read_from_the_cpu_flags(tmp_path):
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n")
    alder_lake = tmp_path / "adl"
    alder_lake.write_text("flags\t\t: fpu avx2 avx_vnni\n")
    assert not speed.cpuinfo_has_vnni(avx2_only)
    assert speed.cpuinfo_has_vnni(zen4) and speed.cpuinfo_has_vnni(alder_lake)


def test_cpu_description_names_the_model_and_the_kernel_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpu = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
    cpuinfo.write_text(cpu + "\n" + cpu.replace("7B13", "other"))
    assert speed.cpu_description(cpuinfo) == "AMD EPYC 7B13 (avx2)"
    assert speed.cpu_description(tmp_path / "missing") == ""


def test_bf16_and_fp32_text_inference_agree(bf16_setting):
    """Both paths run on any x86-64 CPU (bf16 is emulated where it is not native). The
    PyTorch tower itself: the default ONNX Runtime encoder picks its text path once, at load."""
    from crossmodal.models.towers import TowersEncoder, find_tower_config

    encoder = TowersEncoder(find_tower_config("lite-en"))
    bf16_setting("0")
    fp32 = encoder.encode_texts(CAPTIONS)
    bf16_setting("1")
    bf16 = encoder.encode_texts(CAPTIONS)
    assert not np.array_equal(fp32, bf16), "CROSSMODAL_BF16=1 should switch the arithmetic"
    assert (fp32 * bf16).sum(1).min() >= 0.9999
