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


_SAFETENSORS_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16",
                       "bfloat16": "BF16", "int64": "I64", "int32": "I32", "int16": "I16",
                       "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def _tensor_bytes(tensor) -> bytes:
    """A tensor's bytes as safetensors lays them out (contiguous, little-endian)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    import torch

    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def safetensors_header(tensors: dict, metadata: dict | None = None) -> bytes:
    """The length prefix and JSON header of a safetensors file holding ``tensors`` in name
    order (the format: an 8-byte little-endian size, then JSON padded with spaces to a
    multiple of 8; each tensor's dtype, shape and byte range)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")],
                        "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob


def fsync_folder(folder: Path | str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_chunked(path: Path | str) -> bool:
    """Whether ``path`` is an encrypted chunked file (by its magic)."""
    from vault.chunks import MAGIC

    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class Files:
    """Opens a data home's files: encrypted when made with a data key, else plain."""

    def __init__(self, key: bytes | None = None):
        self.key = key

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def open(self, path: Path | str):
        return ChunkedFile(path, self.key) if self.key is not None else PlainFile(path)

    # -- small files, whole: written to a temporary file, fsynced, renamed into place

    def read_bytes(self, path: Path | str) -> bytes:
        """The whole (decrypted) content; ``FileNotFoundError`` when there is none."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(path)
        return self.open(path).read()

    def write_bytes(self, path: Path | str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (a crash leaves the old or the new)."""
        self._write_whole(Path(path), [bytes(data)])

    def _write_whole(self, path: Path, pieces) -> None:
        """``pieces`` written to a temporary file, fsynced, renamed over ``path``."""
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)
        try:
            if self.key is not None:
                ChunkedFile.write_new(temp, self.key, pieces)
            else:
                fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
                try:
                    for piece in pieces:
                        view = memoryview(piece)
                        while view:
                            view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        fsync_folder(path.parent)

    def sha256(self, path: Path | str) -> str:
        """The digest of the file's (decrypted) content, read 1 MiB at a time."""
        import hashlib

        if not Path(path).is_file():
            raise FileNotFoundError(path)
        handle, digest = self.open(path), hashlib.sha256()
        size = handle.size()
        for start in range(0, size, 1 << 20):
            digest.update(handle.read(start, min(size, start + (1 << 20))))
        return digest.hexdigest()

    def read_text(self, path: Path | str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def write_text(self, path: Path | str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def read_json(self, path: Path | str):
        return json.loads(self.read_bytes(path))

    def write_json(self, path: Path | str, value, indent: int | None = 2) -> None:
        self.write_bytes(path, json.dumps(value, indent=indent).encode("utf-8"))

    def save_torch(self, value, path: Path | str) -> None:
        """``torch.save`` of ``value`` to ``path``, atomically (training checkpoints)."""
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(value, buffer)
        self.write_bytes(path, buffer.getvalue())

    def load_torch(self, path: Path | str, map_location="cpu"):
        import io

        import torch

        return torch.load(io.BytesIO(self.read_bytes(path)), map_location=map_location,
                          weights_only=False)

    # -- safetensors, a tensor at a time

    def write_tensors(self, path: Path | str, tensors: dict, metadata: dict | None = None) -> None:
        """``tensors`` (name -> torch tensor) as a safetensors file at ``path``, replaced
        atomically. The bytes go out a tensor at a time, never the whole file at once."""
        def pieces():
            yield safetensors_header(tensors, metadata)
            for name in sorted(tensors):
                yield _tensor_bytes(tensors[name])

        self._write_whole(Path(path), pieces())

    def read_tensor_metadata(self, path: Path | str) -> dict:
        """The ``__metadata__`` of a safetensors file (its header alone is read)."""
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        handle = self.open(path)
        (size,) = struct.unpack("<Q", handle.read(0, 8))
        return json.loads(handle.read(8, 8 + size)).get("__metadata__") or {}

    def read_tensors(self, path: Path | str, device: str = "cpu") -> dict:
        """The tensors of a safetensors file, each read (and decrypted) on its own: no
        buffer of the whole file is ever held."""
        import torch

        if not Path(path).is_file():
            raise FileNotFoundError(path)
        if self.key is None:  # plain: safetensors maps the file itself
            from safetensors.torch import load_file

            return load_file(str(path), device=str(device))
        types = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                 "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                 "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
        handle = ChunkedFile(path, self.key, reuse_last_chunk=True)
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
