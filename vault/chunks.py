"""A file encrypted in authenticated chunks (AES-256-GCM), so it can still be appended to
and read at any offset without decrypting it whole: the token stream, the memory's row
file, its state.

Layout: a 32-byte header (magic, a random file id, the chunk size), then one record per
chunk of ``chunk_size`` plaintext bytes (the last one shorter): a fresh random 96-bit
nonce, then the ciphertext with its 16-byte tag. Chunk ``i`` starts at a fixed offset, and
its tag covers the file id and ``i`` as associated data: a chunk changed, moved or taken
from another file fails to decrypt, and reading it raises ``TamperedChunk`` naming the
file. (Whole chunks cut off the end look like a shorter file: the owner knows the length
it committed, as the stream does in its database, and checks it.)

Appending to a partial last chunk re-encrypts it under a new nonce. That record is first
written to a journal beside the file (``<name>.tail``, fsynced) and then in place, so a
crash in between is redone when the file is next opened: bytes once appended are never
lost to a torn write.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = b"MXENC1\x00\x00"
HEADER = struct.Struct("<8s16sII")  # magic, file id, chunk size, reserved
NONCE, TAG = 12, 16
CHUNK_SIZE = 64 * 1024
JOURNAL = struct.Struct("<Q?")  # a rewritten chunk's index; whether it was the last


def _aad(file_id: bytes, index: int) -> bytes:
    """What chunk ``index``'s tag covers beside its bytes: whose chunk and which."""
    return file_id + struct.pack("<Q", index)


class TamperedChunk(ValueError):
    """A chunk that does not decrypt: the file was changed, damaged or is not ours."""


class ChunkedFile:
    """``path`` encrypted with ``key`` (32 bytes): ``append``, ``read(start, end)``,
    ``truncate``, ``len``. Created when missing."""

    def __init__(self, path: Path | str, key: bytes, chunk_size: int = CHUNK_SIZE,
                 reuse_last_chunk: bool = False):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.path = Path(path)
        self._aead = AESGCM(key)
        # The last chunk read, decrypted, for reads in a row that share it; only for a
        # reader that owns the file meanwhile (another process may extend or zero it).
        self._reuse = reuse_last_chunk
        self._cached: tuple[int, bytes] | None = None
        # A header cut short was a creation a crash interrupted: no data follows it yet.
        if not self.path.exists() or self.path.stat().st_size < HEADER.size:
            self.file_id = os.urandom(16)
            self.chunk_size = chunk_size
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.write(fd, HEADER.pack(MAGIC, self.file_id, chunk_size, 0))
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with open(self.path, "rb") as handle:
                raw = handle.read(HEADER.size)
            magic, self.file_id, self.chunk_size, _ = HEADER.unpack(raw)
            if magic != MAGIC or self.chunk_size <= 0:
                raise TamperedChunk(f"{self.path} is not a memex encrypted file")
        self._redo_tail()

    @classmethod
    def write_new(cls, path: Path | str, key: bytes, pieces, chunk_size: int = CHUNK_SIZE) -> None:
        """A new file at ``path`` holding the concatenated ``pieces`` (bytes), sealed chunk
        by chunk as they come and fsynced once at the end: for files written whole under a
        temporary name and renamed into place (no journal needed, nothing is committed
        before the rename)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead, file_id = AESGCM(key), os.urandom(16)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, HEADER.pack(MAGIC, file_id, chunk_size, 0))
            pending, index = bytearray(), 0

            def seal(plain: bytes) -> None:
                nonce = os.urandom(NONCE)
                record = nonce + aead.encrypt(nonce, plain, _aad(file_id, index))
                os.write(fd, record)

            for piece in pieces:
                pending += piece
                while len(pending) >= chunk_size:
                    seal(bytes(pending[:chunk_size]))
                    del pending[:chunk_size]
                    index += 1
            if pending:
                seal(bytes(pending))
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- layout

    @property
    def _record(self) -> int:
        return NONCE + self.chunk_size + TAG

    def _offset(self, index: int) -> int:
        return HEADER.size + index * self._record

    def __len__(self) -> int:
        body = self.path.stat().st_size - HEADER.size
        full, rest = divmod(body, self._record)
        return full * self.chunk_size + max(0, rest - NONCE - TAG)

    def _chunks(self) -> int:
        body = self.path.stat().st_size - HEADER.size
        return -(-body // self._record)

    # -- one chunk

    def _aad(self, index: int) -> bytes:
        return _aad(self.file_id, index)

    def _seal(self, index: int, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plain, self._aad(index))

    def _open_chunk(self, handle, index: int) -> bytes:
        from cryptography.exceptions import InvalidTag

        handle.seek(self._offset(index))
        record = handle.read(self._record)
        if len(record) < NONCE + TAG:
            raise TamperedChunk(f"{self.path}: chunk {index} is cut short")
        try:
            return self._aead.decrypt(record[:NONCE], record[NONCE:], self._aad(index))
        except InvalidTag:
            raise TamperedChunk(f"{self.path}: chunk {index} does not decrypt (changed, "
                                "damaged or not this file's)") from None

    # -- the journal of a rewritten last chunk

    @property
    def _tail_path(self) -> Path:
        return self.path.with_name(self.path.name + ".tail")

    def _redo_tail(self) -> None:
        """Finish a rewrite of the last chunk that a crash interrupted (or drop a journal
        that was not complete: then the old chunk is still whole in the file)."""
        tail = self._tail_path
        if not tail.exists():
            return
        from cryptography.exceptions import InvalidTag

        data = tail.read_bytes()
        if len(data) >= JOURNAL.size + NONCE + TAG:
            index, truncate = JOURNAL.unpack(data[:JOURNAL.size])
            record = data[JOURNAL.size:]
            try:
                self._aead.decrypt(record[:NONCE], record[NONCE:], self._aad(index))
            except InvalidTag:
                record = None  # a torn journal: the file's own chunk was never touched
            if record is not None:
                self._write_at(self._offset(index), record, truncate=bool(truncate))
        tail.unlink()

    def _rewrite_chunk(self, index: int, record: bytes, truncate: bool) -> None:
        """Replace chunk ``index`` (committed bytes) with ``record``: journal, then in place."""
        fd = os.open(self._tail_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, JOURNAL.pack(index, truncate) + record)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_at(self._offset(index), record, truncate=truncate)
        self._tail_path.unlink(missing_ok=True)

    def _write_at(self, offset: int, data: bytes, truncate: bool = False) -> None:
        self._cached = None
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            if truncate:
                os.ftruncate(fd, offset + len(data))
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the file

    def append(self, data: bytes) -> None:
        if not data:
            return
        length = len(self)
        index, used = divmod(length, self.chunk_size)
        with open(self.path, "rb") as handle:
            head = self._open_chunk(handle, index) if used else b""
        plain = head + bytes(data)
        records = []
        for start in range(0, len(plain), self.chunk_size):
            records.append(self._seal(index + start // self.chunk_size,
                                      plain[start:start + self.chunk_size]))
        if used:  # the partial chunk holds committed bytes: journalled, then the rest
            self._rewrite_chunk(index, records[0], truncate=True)
            records = records[1:]
            index += 1
        if records:
            self._write_at(self._offset(index), b"".join(records), truncate=True)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        length = len(self)
        end = length if end is None else min(end, length)
        if start < 0 or start > end:
            raise ValueError(f"cannot read bytes {start}..{end} of {length}")
        if start == end:
            return b""
        first, last = start // self.chunk_size, (end - 1) // self.chunk_size
        with open(self.path, "rb") as handle:  # (reads in a row often share a chunk)
            parts = [self._cached[1] if self._cached and self._cached[0] == i
                     else self._open_chunk(handle, i) for i in range(first, last + 1)]
        if self._reuse:
            self._cached = (last, parts[-1])
        plain = b"".join(parts)
        skip = start - first * self.chunk_size
        return plain[skip:skip + end - start]

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` bytes."""
        if length >= len(self):
            return
        index, used = divmod(length, self.chunk_size)
        if not used:
            self._write_at(self._offset(index), b"", truncate=True)
            return
        with open(self.path, "rb") as handle:
            head = self._open_chunk(handle, index)[:used]
        self._rewrite_chunk(index, self._seal(index, head), truncate=True)

    def write_at(self, offset: int, data: bytes) -> None:
        """Overwrite bytes from ``offset`` (at most up to the end, then append): each chunk
        touched is re-encrypted under a new nonce and rewritten through the journal, so
        its old ciphertext is gone (forgetting) and a crash loses nothing committed."""
        length = len(self)
        if offset < 0 or offset > length:
            raise ValueError(f"cannot write at {offset} of a {length}-byte file")
        inside = bytes(data[:length - offset])
        position = offset
        while inside:
            index, skip = divmod(position, self.chunk_size)
            with open(self.path, "rb") as handle:
                plain = bytearray(self._open_chunk(handle, index))
            take = min(len(inside), len(plain) - skip)
            plain[skip:skip + take] = inside[:take]
            last = index == self._chunks() - 1
            self._rewrite_chunk(index, self._seal(index, bytes(plain)), truncate=last)
            inside, position = inside[take:], position + take
        self.append(bytes(data[length - offset:]))

    def size(self) -> int:
        return len(self)

    def drop_torn_tail(self) -> int:
        """Cut a last record that does not decrypt: the remains of an append a crash cut
        short (appended chunks past the partial one are written in place, without the
        journal). Only for an owner that knows how many bytes it committed and checks
        them after: a tampered last chunk looks the same. Returns the bytes dropped."""
        from cryptography.exceptions import InvalidTag

        chunks = self._chunks()
        if not chunks:
            return 0
        index = chunks - 1
        with open(self.path, "rb") as handle:
            handle.seek(self._offset(index))
            record = handle.read(self._record)
        try:
            if len(record) < NONCE + TAG:
                raise InvalidTag()
            self._aead.decrypt(record[:NONCE], record[NONCE:], self._aad(index))
        except InvalidTag:
            dropped = len(self) - index * self.chunk_size
            self._write_at(self._offset(index), b"", truncate=True)
            return dropped
        return 0

    def sync(self) -> None:
        """(Every write above is fsynced already.)"""
