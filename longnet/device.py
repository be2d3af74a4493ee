"""Where and in which precision a model runs: ``choose_device``, ``choose_dtype`` and
``autocast`` (re-exported by ``longnet.model``). At the bottom of the package: the model,
the memory, generation and training all use them.
"""

from __future__ import annotations

import contextlib

import torch


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else the CPU."""
    if device not in (None, "auto"):
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(dtype: str | torch.dtype | None = None,
                 device: str | torch.device | None = None) -> torch.dtype:
    """The compute dtype: given, else bfloat16 on a CUDA card that has it, else float32.

    bfloat16 on CPU is available (autocast) but not the default: on CPUs without
    native bf16 instructions it is not faster and loses precision.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in (None, "auto"):
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(names)} or 'auto'")
        return names[dtype]
    device = choose_device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 matmuls
    run several times faster than float32; on AVX2-only CPUs they are emulated and slower.
    Detected at run time: the machines differ."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # an old build without the probe's kernel
            continue
    return False


def fast_dtype(device: torch.device) -> torch.dtype:
    """The fastest dtype a model's compute can autocast to on ``device``: bfloat16 on a
    CUDA card or a CPU that has it, else float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """bfloat16/float16 autocast on ``device``; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
