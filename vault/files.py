"""One interface over a data home's files, plain or encrypted, for the layers that keep
bytes on disk (the stream, the memory's rows and state): ``open(path)`` gives a file with
``size``, ``read(start, end)``, ``append``, ``write_at``, ``truncate`` and ``sync``. Plain
files are the bytes as they are; with a data key they are ``ChunkedFile``s. Safetensors
are written and read through the same interface, one tensor's bytes at a time."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vault.chunks import ChunkedFile


class PlainFile:
    """A file's bytes as they are, with the interface of ``ChunkedFile``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))

    def size(self) -> int:
        return self.path.stat().st_size

    __len__ = size

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        end = self.size() if end is None else min(end, self.size())
        if start >= end:
            return b""
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def _pwrite(self, offset: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, data: bytes) -> None:
        if data:
            self._pwrite(self.size(), bytes(data))

    def write_at(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset > self.size():
            raise ValueError(f"cannot write at {offset} of a {self.size()}-byte file")
        self._pwrite(offset, bytes(data))

    def truncate(self, length: int) -> None:
        if length < self.size():
            os.truncate(self.path, length)

    def sync(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Files:
    """Opens a data home's files: encrypted when made with a data key, else plain."""

    def __init__(self, key: bytes | None = None):
        self.key = key

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def open(self, path: Path | str):
        return ChunkedFile(path, self.key) if self.key is not None else PlainFile(path)

    # -- safetensors, a tensor at a time

    def write_tensors(self, path: Path | str, tensors: dict, metadata: dict | None = None) -> None:
        """``tensors`` (name -> torch tensor) as a safetensors file at ``path``."""
        from safetensors.torch import save

        target = Path(path)
        target.unlink(missing_ok=True)
        self.open(target).append(save(tensors, metadata=metadata))

    def read_tensors(self, path: Path | str, device: str = "cpu") -> dict:
        """The tensors of a safetensors file, each read (and decrypted) on its own: no
        buffer of the whole file is ever held."""
        import torch

        types = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                 "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                 "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
        handle = self.open(path)
        (size,) = struct.unpack("<Q", handle.read(0, 8))
        header = json.loads(handle.read(8, 8 + size))
        header.pop("__metadata__", None)
        out = {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            raw = handle.read(8 + size + start, 8 + size + end)
            dtype = types[info["dtype"]]
            tensor = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else \
                torch.empty(0, dtype=dtype)
            out[name] = tensor.reshape(info["shape"]).to(device)
        return out
