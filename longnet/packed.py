"""Packed weight copies for decoding on a CPU.

Decoding runs one token per step, so every step reads every weight once: a matrix-
vector product is bound by memory bandwidth, not arithmetic. SmolLM2-135M in float32
is 540 MB per token; on a 2-core laptop-class CPU that alone caps decoding near 10
tokens/s. A single-row input can instead read a packed copy of each weight:

- ``"int4"``: a weight whose values are already 4-bit in groups of 32 along the input
  dimension (as after dequantising a Q4_0/Q4_1 GGUF, the bundled model's format) is
  packed for torch's int4 CPU kernel: 8× fewer bytes. The kernel takes bfloat16
  activations and bfloat16 scales, so outputs carry bfloat16 rounding (~3e-3
  relative), as bfloat16 inference does. A weight that is not 4-bit (the bundled
  model's Q8_0 embeddings/lm head) is copied to float16 instead: nothing is quantised
  more coarsely than it was stored.
- ``"float16"``: every weight copied to float16 (activations rounded to float16 too,
  ~5e-4 relative): 2× fewer bytes.
- ``"float32"``: no copy.

Prefill (many rows per step) and training always use the float32 weights; copies are
rebuilt when a weight changes (LoRA merged, weights reloaded). Packing SmolLM2 takes ~2 s,
so for a model folder memex converted itself the copies of its unchanged weights are kept
in its ``decode-cache/`` and read back in ~0.1 s.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

DECODE_WEIGHTS = ("int4", "float16", "float32")
INT4_GROUP = 32
PACK_LOCK = threading.Lock()  # one packing at a time (a warm-up thread and a first answer)


def int4_kernel_available() -> bool:
    ops = torch.ops.aten
    return hasattr(ops, "_weight_int4pack_mm_for_cpu") and \
        hasattr(ops, "_convert_weight_to_int4pack_for_cpu")


def int4_codes(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(codes int32 [N, K] in 0..15, scale_and_zero float32 [K/32, N, 2])`` such that
    ``(code - 8) * scale + zero`` gives back ``weight`` — or None when the weight is not
    4-bit in groups of 32 along its input dimension (checked to float32 rounding)."""
    if weight.dim() != 2:
        return None
    N, K = weight.shape
    if K % INT4_GROUP or N % 16:
        return None
    if N > 64 and int4_codes(weight[:64]) is None:  # a cheap look at 64 rows first
        return None
    w = weight.detach().float().reshape(N, K // INT4_GROUP, INT4_GROUP)
    low = w.amin(-1, keepdim=True)
    scale = (w.amax(-1, keepdim=True) - low) / 15
    step = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = ((w - low) / step).round().clamp(0, 15)
    back = codes * scale + low
    if (back - w).abs().amax() > 1e-5 * (float(w.abs().amax()) + 1e-30):
        return None
    zero = low + 8 * scale  # the kernel subtracts 8 from every code
    scale_and_zero = torch.cat((scale, zero), -1).reshape(N, K // INT4_GROUP, 2)
    return codes.reshape(N, K).to(torch.int32), scale_and_zero.transpose(0, 1).contiguous()


class PackedLinear:
    """``y = x @ W.T + b`` for one row ``x [..., K]`` from a packed copy of ``W``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, kind: str,
                 parts: dict[str, torch.Tensor] | None = None):
        if kind not in DECODE_WEIGHTS:
            raise ValueError(f"decode weights must be one of {DECODE_WEIGHTS}, not {kind!r}")
        self.weight = weight  # the float32 original: fallback for a float16 overflow
        self.bias = None if bias is None else bias.detach()
        self.out_features = weight.shape[0]
        self.int4 = None
        self.half = None
        if parts is not None:  # read back from a cache file
            if "int4" in parts:
                self.int4 = (parts["int4"], parts["scale_and_zero"])
            self.half = parts.get("half")
        elif kind == "int4" and weight.device.type == "cpu" and int4_kernel_available():
            found = int4_codes(weight)
            if found is not None:
                codes, scale_and_zero = found
                try:
                    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
                    self.int4 = (packed, scale_and_zero.to(torch.bfloat16))
                except RuntimeError:  # a shape this torch's kernel does not take: float16
                    self.int4 = None
        if parts is None and self.int4 is None and kind != "float32":
            self.half = weight.detach().to(torch.float16)
        self.kind = "int4" if self.int4 is not None else \
            "float16" if self.half is not None else "float32"

    def parts(self) -> dict[str, torch.Tensor]:
        """What a cache file keeps of this copy."""
        if self.int4 is not None:
            return {"int4": self.int4[0], "scale_and_zero": self.int4[1]}
        return {} if self.half is None else {"half": self.half}

    @property
    def nbytes(self) -> int:
        if self.int4 is not None:
            return sum(t.numel() * t.element_size() for t in self.int4)
        tensor = self.half if self.half is not None else self.weight
        return tensor.numel() * tensor.element_size()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if self.int4 is not None:
            packed, scale_and_zero = self.int4
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                rows.to(torch.bfloat16), packed, INT4_GROUP, scale_and_zero).to(x.dtype)
        elif self.half is not None:
            y = F.linear(rows.to(torch.float16), self.half).to(x.dtype)
            if not bool(torch.isfinite(y).all()):  # beyond float16's range: read float32
                y = F.linear(rows, self.weight.to(x.dtype))
        else:
            y = F.linear(rows, self.weight.to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def weights_key(weights: list[torch.Tensor]) -> tuple:
    """Changes when any of ``weights`` is replaced or written in place."""
    return tuple((w.data_ptr(), w._version) for w in weights)


def cache_file(folder: Path, kind: str) -> Path:
    """Where a converted model folder keeps its decode copies: a subfolder, so that nothing
    that globs the folder's ``*.safetensors`` takes them for weights; a file per torch
    version, as the int4 layout is the kernel's own."""
    version = torch.__version__.replace("+", "-")
    return Path(folder) / "decode-cache" / f"{kind}-torch{version}.safetensors"


def load_copies(path: Path, weights_hash: str, linears) -> list[PackedLinear] | None:
    """The copies kept in ``path`` for these weights, or None (absent, stale, damaged)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("weights") != weights_hash or int(meta.get("count", -1)) != len(linears):
                return None
            kind = meta["kind"]
            copies = []
            for index, module in enumerate(linears):
                prefix = f"{index}."
                parts = {key[len(prefix):]: handle.get_tensor(key) for key in handle.keys()
                         if key.startswith(prefix)}
                copies.append(PackedLinear(module.weight, module.bias, kind, parts=parts))
            return copies
    except (OSError, KeyError, ValueError, SafetensorError):
        return None


def save_copies(path: Path, weights_hash: str, kind: str, copies: list[PackedLinear]) -> None:
    """Keep ``copies`` in ``path`` (atomically; a folder that cannot be written is skipped)."""
    from safetensors.torch import save_file

    tensors = {f"{index}.{name}": tensor.contiguous() for index, copy in enumerate(copies)
               for name, tensor in copy.parts().items()}
    temp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)  # private, as the folder it sits in
        save_file(tensors, str(temp), metadata={"weights": weights_hash, "kind": kind,
                                                "count": str(len(copies))})
        os.chmod(temp, 0o600)
        os.replace(temp, path)
        for stale in path.parent.glob(f"{kind}-torch*.safetensors"):  # other torch versions
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        temp.unlink(missing_ok=True)
