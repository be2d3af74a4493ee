"""The token stream: one append-only file of little-endian uint32 token ids.

Layout of ``<home>/stream.u32``::

    bytes 0..8      magic b"MEMEXTOK"
    bytes 8..12     format version (uint32)
    bytes 12..16    length of the JSON metadata that follows (uint32)
    bytes 16..      JSON: tokenizer_id, tokenizer_hash, stream_id, created_at
    HEADER_SIZE..   token ids, uint32 little-endian

In an encrypted data home the same bytes are kept in authenticated chunks
(``vault.ChunkedFile``): appended, read and overwritten at the same offsets.

The file alone does not say how many tokens are valid: the store records the
committed length in the same transaction as the rows describing those tokens.
Bytes past the committed length are the remains of an interrupted append and are
cut off the next time the store opens (under the database write lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vault import files_for

MAGIC = b"MEMEXTOK"
VERSION = 1
HEADER_SIZE = 512
TOKEN_DTYPE = np.dtype("<u4")
TOKEN_BYTES = TOKEN_DTYPE.itemsize


class StreamError(RuntimeError):
    """The stream file is missing, damaged, or was built with another tokenizer."""


def _header_bytes(meta: dict) -> bytes:
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    if 16 + len(blob) > HEADER_SIZE:
        raise StreamError("stream header metadata too long")
    header = MAGIC + struct.pack("<II", VERSION, len(blob)) + blob
    return header.ljust(HEADER_SIZE, b"\0")


def read_header(path: Path) -> dict:
    files = files_for(path)
    if files.encrypted:
        from vault import TamperedChunk

        try:
            raw = files.open(path).read(0, HEADER_SIZE)
        except TamperedChunk as exc:
            raise StreamError(str(exc)) from None
    else:
        with open(path, "rb") as handle:
            raw = handle.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
        raise StreamError(f"{path} is not a memex token stream (bad header)")
    version, size = struct.unpack("<II", raw[8:16])
    if version != VERSION:
        raise StreamError(f"{path} has stream format {version}; this memex reads {VERSION}")
    try:
        return json.loads(raw[16:16 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StreamError(f"{path} has a damaged header: {exc}") from None


def create_stream_file(path: Path, tokenizer_id: str, tokenizer_hash: str,
                       stream_id: str | None = None) -> dict:
    """Write a new, empty stream file (0600) atomically and return its header."""
    meta = {
        "tokenizer_id": tokenizer_id,
        "tokenizer_hash": tokenizer_hash,
        "stream_id": stream_id or uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    files_for(path).write_bytes(path, _header_bytes(meta))  # (temp file, fsync, rename)
    return meta


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TokenStream:
    """Read access to the committed part of the stream, plus the low-level writes.

    ``len(stream)`` is the committed number of tokens (asked from the store each
    time, so it follows appends made by other processes). Token ids are read with
    a numpy memmap. Appends and zeroing are done by the store inside its
    transactions; do not call them directly.
    """

    def __init__(self, path: Path, committed_length: Callable[[], int]):
        self.path = Path(path)
        self._committed_length = committed_length
        self._header: dict | None = None
        self._map: np.memmap | None = None
        self._map_length = -1
        self._files = files_for(self.path)

    @property
    def encrypted(self) -> bool:
        return self._files.encrypted

    def _chunked(self):
        return self._files.open(self.path)

    # -- metadata ---------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def header(self) -> dict:
        if self._header is None:
            self._header = read_header(self.path) if self.exists else {}
        return self._header

    def reload_header(self) -> None:
        self._header = None
        self._close_map()

    @property
    def tokenizer_id(self) -> str | None:
        return self.header.get("tokenizer_id")

    @property
    def tokenizer_hash(self) -> str | None:
        return self.header.get("tokenizer_hash")

    @property
    def stream_id(self) -> str | None:
        """Changes whenever the file is rewritten (compaction)."""
        return self.header.get("stream_id")

    def __len__(self) -> int:
        return self._committed_length()

    # -- reading ----------------------------------------------------------
    def _close_map(self) -> None:
        if self._map is not None:
            del self._map
        self._map = None
        self._map_length = -1

    def _mapped(self, length: int) -> np.memmap:
        if self._map is None or self._map_length != length:
            self._close_map()
            self._map = np.memmap(self.path, dtype=TOKEN_DTYPE, mode="r",
                                  offset=HEADER_SIZE, shape=(length,))
            self._map_length = length
        return self._map

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Token ids in [start, end) of the committed stream, as a uint32 array (a copy)."""
        length = len(self)
        end = length if end is None else min(end, length)
        start = max(0, start)
        if end <= start:
            return np.zeros(0, dtype=np.uint32)
        if self.encrypted:
            from vault import TamperedChunk

            try:
                raw = self._chunked().read(HEADER_SIZE + start * TOKEN_BYTES,
                                           HEADER_SIZE + end * TOKEN_BYTES)
            except TamperedChunk as exc:
                raise StreamError(str(exc)) from None
            if len(raw) != (end - start) * TOKEN_BYTES:
                raise StreamError(f"{self.path} is shorter than its committed length")
            return np.frombuffer(raw, dtype=TOKEN_DTYPE).astype(np.uint32)
        return np.array(self._mapped(length)[start:end], dtype=np.uint32)

    def prefix_hash(self, n: int) -> str:
        """sha256 of the first ``n`` committed tokens (to check a memory still matches)."""
        n = min(n, len(self))
        digest = hashlib.sha256()
        step = 1 << 20
        for start in range(0, n, step):
            digest.update(self.read(start, min(n, start + step)).astype(TOKEN_DTYPE).tobytes())
        return digest.hexdigest()

    # -- writing (store only) ---------------------------------------------
    def file_bytes(self) -> int:
        """The file's length (decrypted), header included."""
        return self._chunked().size() if self.encrypted else self.path.stat().st_size

    def file_tokens(self) -> int:
        """Whole tokens physically in the file (committed or not)."""
        return max(0, (self.file_bytes() - HEADER_SIZE) // TOKEN_BYTES)

    def write_at(self, start: int, ids: np.ndarray, sync: bool = True) -> None:
        data = np.ascontiguousarray(ids, dtype=TOKEN_DTYPE).tobytes()
        if self.encrypted:  # (each chunk written is fsynced)
            self._chunked().write_at(HEADER_SIZE + start * TOKEN_BYTES, data)
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.pwrite(fd, data, HEADER_SIZE + start * TOKEN_BYTES)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        if self.encrypted:
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def zero(self, ranges: list[tuple[int, int]]) -> None:
        """Overwrite token ranges with zeros (forgetting) and fsync."""
        if not ranges:
            return
        if self.encrypted:  # the chunks are re-encrypted: their old ciphertext is gone
            handle = self._chunked()
            for start, end in ranges:
                for first in range(start, end, 1 << 18):
                    last = min(end, first + (1 << 18))
                    handle.write_at(HEADER_SIZE + first * TOKEN_BYTES,
                                    bytes((last - first) * TOKEN_BYTES))
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            for start, end in ranges:
                offset = HEADER_SIZE + start * TOKEN_BYTES
                remaining = (end - start) * TOKEN_BYTES
                block = bytes(min(remaining, 1 << 20))
                while remaining > 0:
                    size = min(remaining, len(block))
                    os.pwrite(fd, block[:size], offset)
                    offset += size
                    remaining -= size
            os.fsync(fd)
        finally:
            os.close(fd)
        self._close_map()

    def truncate(self, length: int) -> None:
        self._close_map()
        if self.encrypted:
            self._chunked().truncate(HEADER_SIZE + length * TOKEN_BYTES)
            return
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.ftruncate(fd, HEADER_SIZE + length * TOKEN_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
