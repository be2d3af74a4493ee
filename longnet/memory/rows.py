"""Every token's keys and values as the frozen writer made them: the memory's rows store.

The levels keep one row in ``rate`` of the far history, which is enough to carry its gist
and too little to quote it back (issue 18). This store keeps what the writer pass already
computed for *every* token and every layer — the key before its rotation and the value,
float16 — in one append-only file, so a turn can later read the rows of any passage
(``Memory.recall_fork``) as if it had just read that passage, without running the model
over its text again, and with each row still carrying the context it was written in.

Row ``t`` of the file is token ``start + t`` of the memory: ``[layers, 2, kv_heads,
head_dim]`` float16, 23,040 bytes for SmolLM2-135M (30 × 2 × 3 × 64 × 2). The file grows
with the history (2.3 GB per 100K tokens), which is why it is optional (``keep_rows``).
In an encrypted data home the file is kept in authenticated chunks (``vault``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import vault

ROWS_FILE = "rows.f16"


class RowStore:
    """An append-only file of per-token rows, readable at any span while it grows."""

    def __init__(self, path, layers: int, kv_heads: int, head_dim: int, start: int = 0):
        self.path = Path(path)
        self.shape = (layers, 2, kv_heads, head_dim)
        self.row_bytes = int(np.prod(self.shape)) * 2
        self.start = int(start)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        files = vault.files_for(self.path)
        self._chunked = files.open(self.path) if files.encrypted else None
        if self._chunked is not None:
            self._chunked.drop_torn_tail()  # a build killed mid-append: its rows go again
        self.path.touch(exist_ok=True)
        size = self.nbytes
        if size % self.row_bytes:  # a torn last write: drop the partial row
            self._truncate_bytes(size - size % self.row_bytes)

    def _truncate_bytes(self, length: int) -> None:
        if self._chunked is not None:
            self._chunked.truncate(length)
        else:
            os.truncate(self.path, length)

    @classmethod
    def for_config(cls, directory, config, start: int = 0, fresh: bool = False) -> RowStore:
        path = Path(directory) / ROWS_FILE
        if fresh and path.exists():
            path.unlink()
        return cls(path, config.num_layers, config.num_kv_heads, config.head_dim, start)

    @property
    def end(self) -> int:
        """One past the last token with rows."""
        return self.start + self.nbytes // self.row_bytes

    @property
    def nbytes(self) -> int:
        return self._chunked.size() if self._chunked is not None else self.path.stat().st_size

    def covers(self, start: int, end: int) -> bool:
        return self.start <= start <= end <= self.end

    def append(self, rows: torch.Tensor) -> None:
        """Add rows ``[T, layers, 2, kv_heads, head_dim]`` after the last."""
        if tuple(rows.shape[1:]) != self.shape:
            raise ValueError(f"rows of shape {tuple(rows.shape[1:])}, expected {self.shape}")
        data = rows.detach().to("cpu", torch.float16).contiguous().numpy()
        if self._chunked is not None:
            self._chunked.append(data.tobytes())
            return
        with open(self.path, "ab") as handle:
            handle.write(data.tobytes())

    def truncate(self, end: int) -> None:
        """Keep the rows of tokens before ``end`` (what a saved memory holds)."""
        if end < self.start:
            raise ValueError("cannot truncate before the store's first row")
        self._truncate_bytes(min(self.nbytes, (end - self.start) * self.row_bytes))

    def flush(self) -> None:
        if self._chunked is not None:  # (its writes are fsynced as they go)
            return
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())

    def read(self, start: int, end: int) -> torch.Tensor:
        """The rows of tokens ``[start, end)``: ``[layers, 2, kv_heads, n, head_dim]``."""
        if not self.covers(start, end):
            raise ValueError(f"no rows for tokens {start}..{end} (the store holds "
                             f"{self.start}..{self.end})")
        count = end - start
        if count == 0:
            return torch.zeros(self.shape[:3] + (0, self.shape[3]), dtype=torch.float16)
        offset = (start - self.start) * self.row_bytes
        if self._chunked is not None:
            data = self._chunked.read(offset, offset + count * self.row_bytes)
        else:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(count * self.row_bytes)
        rows = torch.frombuffer(bytearray(data), dtype=torch.float16).view(count, *self.shape)
        return rows.permute(1, 2, 3, 0, 4).contiguous()

    def zero(self, start: int, end: int) -> int:
        """Overwrite the rows of tokens ``[start, end)`` with zeros (forgotten text: its
        rows could be read back into words). Returns the rows zeroed."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return 0
        if self._chunked is not None:  # re-encrypted chunks: the old ciphertext is gone
            for first in range(start, end, 256):
                last = min(end, first + 256)
                self._chunked.write_at((first - self.start) * self.row_bytes,
                                       bytes((last - first) * self.row_bytes))
            return end - start
        with open(self.path, "rb+") as handle:
            handle.seek((start - self.start) * self.row_bytes)
            handle.write(bytes((end - start) * self.row_bytes))
            handle.flush()
            os.fsync(handle.fileno())
        return end - start
