"""Token ids between the phases: ``PreTokens`` keeps the ids the workers computed while
reading until the stream phase appends them, and ``_encode_sliced`` is the
bounded-memory encode both the reading and the stream phase use."""

from __future__ import annotations

import bisect
import os
from array import array
from pathlib import Path

import numpy as np

from ingest.stream.file import TOKEN_DTYPE
from ingest.stream.tokenizing import encode_flat

TOKENIZE_SLICE_CHARS = 256 * 1024  # bounds the word lists and index arrays of one encode


class PreTokens:
    """Token ids of entries' chunks tokenized while reading (by the workers), kept for the
    stream phase of the same run. They live in an unnamed temporary file in the data home
    (private; it vanishes when closed or when the process dies, killed or not), and are
    recorded only after the rows they belong to are committed. An entry found here with
    the same number of chunks as in the store is appended from these ids; any other is
    tokenized from its text, so a missing or partial file changes nothing but the speed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = None
        self.size = 0
        self.entry_ids = array("q")  # ascending (ids of rows inserted by this run)
        self.offsets = array("q")
        self.chunks = array("q")
        self.header_sizes = array("q")  # bytes of the header text the header ids encode
        self.header_counts = array("q")

    def __enter__(self) -> PreTokens:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def add(self, entry_id: int, ids: np.ndarray, per_chunk: np.ndarray, header: str = "",
            header_ids: np.ndarray | None = None) -> None:
        """Keep an entry's chunk ids (and its header's, with the header they encode)."""
        if self.entry_ids and entry_id <= self.entry_ids[-1]:
            return  # (ids only grow within a run; keep the index sorted regardless)
        if self.file is None:
            import tempfile

            self.file = tempfile.TemporaryFile(dir=self.folder)  # O_TMPFILE: never named
        header_bytes = header.encode("utf-8") if header_ids is not None else b""
        header_ids = header_ids if header_ids is not None else np.zeros(0, TOKEN_DTYPE)
        data = b"".join([header_bytes, np.ascontiguousarray(header_ids, TOKEN_DTYPE).tobytes(),
                         np.ascontiguousarray(per_chunk, dtype="<i8").tobytes(),
                         np.ascontiguousarray(ids, dtype=TOKEN_DTYPE).tobytes()])
        os.pwrite(self.file.fileno(), data, self.size)
        self.entry_ids.append(entry_id)
        self.offsets.append(self.size)
        self.chunks.append(len(per_chunk))
        self.header_sizes.append(len(header_bytes))
        self.header_counts.append(len(header_ids))
        self.size += len(data)

    def take(self, entry_id: int, header: str = ""
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(token ids, ids per chunk, the header's ids or None if kept for another header
        than ``header``) of an entry, or None if not here."""
        at = bisect.bisect_left(self.entry_ids, entry_id)
        if at == len(self.entry_ids) or self.entry_ids[at] != entry_id:
            return None
        offset, chunk_count = self.offsets[at], self.chunks[at]
        header_size, header_count = self.header_sizes[at], self.header_counts[at]
        head = os.pread(self.file.fileno(), header_size + 4 * header_count + 8 * chunk_count,
                        offset)
        if len(head) != header_size + 4 * header_count + 8 * chunk_count:
            return None
        header_ids = None
        if header_size and head[:header_size] == header.encode("utf-8"):
            header_ids = np.frombuffer(head, dtype=TOKEN_DTYPE, count=header_count,
                                       offset=header_size)
        per_chunk = np.frombuffer(head, dtype="<i8", offset=header_size + 4 * header_count)
        total = int(per_chunk.sum())
        ids = np.frombuffer(os.pread(self.file.fileno(), 4 * total, offset + len(head)),
                            dtype=TOKEN_DTYPE)
        if len(ids) != total:
            return None
        return ids, per_chunk.astype(np.int64), header_ids


def _encode_sliced(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """encode_flat a slice at a time (bounded memory even for a huge entry)."""
    parts, lengths = [], np.zeros(len(texts), dtype=np.int64)
    index = 0
    while index < len(texts):
        size, stop = 0, index
        while stop < len(texts) and (stop == index or size < TOKENIZE_SLICE_CHARS):
            size += len(texts[stop])
            stop += 1
        flat, lengths[index:stop] = encode_flat(tokenizer, texts[index:stop])
        parts.append(flat)
        index = stop
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
    return flat, lengths
