"""CPU inference speed-ups that keep results equal (to float tolerance) to eager fp32."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only to trace: the ONNX Runtime path reads CPU flags alone
    import torch
    from torch import nn

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX); emulated bf16 would be slower than fp32.

    CROSSMODAL_BF16=0 turns bf16 off (fp32, as on CPUs without it), =1 forces it.
    """
    forced = os.environ.get("CROSSMODAL_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return cpuinfo_has_bf16(CPUINFO)


def cpuinfo_has_bf16(cpuinfo: Path) -> bool:
    """Whether a /proc/cpuinfo text lists native bf16; False where it cannot be read."""
    try:
        flags = cpuinfo.read_text(encoding="ascii", errors="ignore").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpuinfo_has_vnni(cpuinfo: Path = CPUINFO) -> bool:
    """VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products that cannot saturate; True where
    /proc/cpuinfo cannot be read (nothing to warn about then)."""
    try:
        flags = cpuinfo.read_text(encoding="ascii", errors="ignore").split()
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags


# The flags that pick ONNX Runtime's int8 kernels and torch's bf16 path.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8")


def cpu_description(cpuinfo: Path = CPUINFO) -> str:
    """'model name (flags that choose kernels)', for benchmark records; '' where unreadable."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="ignore")
    except OSError:
        return ""
    first_cpu = text.split("\n\n")[0].splitlines()
    fields = {key.strip(): value.strip()
              for key, value in (line.split(":", 1) for line in first_cpu if ":" in line)}
    flags = fields.get("flags", "").split()
    present = [flag for flag in KERNEL_FLAGS if flag in flags]
    return f"{fields.get('model name', 'unknown CPU')} ({', '.join(present) or 'no AVX2'})"


def traced_for_inference(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """TorchScript trace + freeze (folds batch norms, fuses ops): ~1.8x faster convolutions
    on CPU, same numbers. Falls back to the eager module where tracing fails."""
    import torch

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(module.eval(), example))
    except Exception:  # noqa: BLE001 - any tracing failure just means "stay eager"
        return module
