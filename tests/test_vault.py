"""Encryption at rest, its foundation (issue 21): the passphrase wraps a random data key
(Argon2id, AES-256-GCM), and files encrypted in authenticated chunks can be appended to,
read at any offset, cut back, survive a crash in the middle of a rewrite, and refuse a
changed byte with an error that names the file."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault import (
    ChunkedFile,
    KdfParams,
    TamperedChunk,
    VaultError,
    WrongPassphrase,
    change_passphrase,
    create,
    is_encrypted,
    unlock,
)
from vault.chunks import HEADER, NONCE, TAG

FAST = KdfParams.fresh(time_cost=1, memory_kib=1024)  # real Argon2id, cheap for tests


def test_the_passphrase_unlocks_the_data_key_and_nothing_else(tmp_path):
    key = create(tmp_path, "correct horse battery staple", FAST)
    assert len(key) == 32 and is_encrypted(tmp_path)
    header = (tmp_path / "vault.json").read_bytes()
    assert b"correct horse" not in header and key not in header
    assert stat.S_IMODE(os.stat(tmp_path / "vault.json").st_mode) == 0o600
    assert json.loads(header)["kdf"] == "argon2id"
    assert unlock(tmp_path, "correct horse battery staple") == key
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        unlock(tmp_path, "correct horse battery stapler")
    assert (tmp_path / "vault.json").read_bytes() == header  # nothing modified
    with pytest.raises(VaultError, match="already"):
        create(tmp_path, "again", FAST)
    with pytest.raises(VaultError, match="not encrypted"):
        unlock(tmp_path / "elsewhere", "x")


def test_changing_the_passphrase_rewraps_the_same_key(tmp_path):
    key = create(tmp_path, "old words", FAST)
    change_passphrase(tmp_path, "old words", "new words", FAST)
    assert unlock(tmp_path, "new words") == key
    with pytest.raises(WrongPassphrase):
        unlock(tmp_path, "old words")
    with pytest.raises(WrongPassphrase):
        change_passphrase(tmp_path, "old words", "other", FAST)
    assert not list(tmp_path.glob(".*.tmp"))


def test_tuning_takes_about_the_time_asked():
    import time

    from vault.keys import derive, tune

    params = tune(target_s=0.2, memory_kib=8 * 1024)
    began = time.perf_counter()
    derive("x", params)
    assert params.time_cost >= 2 and time.perf_counter() - began < 2.0


def test_a_chunked_file_appends_and_reads_at_any_offset(tmp_path):
    key = os.urandom(32)
    path = tmp_path / "stream.enc"
    data = bytes(range(256)) * 50  # 12,800 bytes
    f = ChunkedFile(path, key, chunk_size=1000)
    for start in range(0, len(data), 777):  # appends that straddle chunk edges
        f.append(data[start:start + 777])
    assert len(f) == len(data)
    again = ChunkedFile(path, key)  # the chunk size comes from the header
    assert again.read() == data
    assert again.read(995, 2010) == data[995:2010] and again.read(5, 5) == b""
    assert bytes(range(256)) not in path.read_bytes()  # no plaintext on disk
    again.truncate(4321)
    assert len(again) == 4321 and again.read() == data[:4321]
    again.append(b"more")
    assert ChunkedFile(path, key).read() == data[:4321] + b"more"


@settings(max_examples=25, deadline=None)
@given(pieces=st.lists(st.binary(max_size=300), max_size=12),
       chunk=st.integers(min_value=1, max_value=97))
def test_any_appends_read_back_the_same(tmp_path_factory, pieces, chunk):
    path = tmp_path_factory.mktemp("enc") / "f.enc"
    f = ChunkedFile(path, b"k" * 32, chunk_size=chunk)
    for piece in pieces:
        f.append(piece)
    whole = b"".join(pieces)
    assert len(f) == len(whole) and f.read() == whole
    if whole:
        mid = len(whole) // 2
        assert f.read(mid // 2, mid + 1) == whole[mid // 2:mid + 1]


def test_a_flipped_byte_is_an_error_naming_the_file(tmp_path):
    key = os.urandom(32)
    path = tmp_path / "rows.enc"
    f = ChunkedFile(path, key, chunk_size=64)
    f.append(b"a" * 200)
    raw = bytearray(path.read_bytes())
    raw[HEADER.size + (NONCE + 64 + TAG) + 20] ^= 0x01  # inside chunk 1
    path.write_bytes(bytes(raw))
    f = ChunkedFile(path, key)
    assert f.read(0, 64) == b"a" * 64  # chunk 0 is untouched and still reads
    with pytest.raises(TamperedChunk, match=r"rows\.enc: chunk 1"):
        f.read(60, 70)
    with pytest.raises(TamperedChunk):  # the wrong key reads nothing either
        ChunkedFile(path, os.urandom(32)).read(0, 10)


def test_chunks_cannot_be_swapped(tmp_path):
    key = os.urandom(32)
    path = tmp_path / "f.enc"
    f = ChunkedFile(path, key, chunk_size=16)
    f.append(b"0" * 16 + b"1" * 16)
    raw = path.read_bytes()
    record = NONCE + 16 + TAG
    first, second = raw[HEADER.size:HEADER.size + record], raw[HEADER.size + record:]
    path.write_bytes(raw[:HEADER.size] + second + first)
    with pytest.raises(TamperedChunk):
        ChunkedFile(path, key).read()


def test_a_crash_while_the_last_chunk_is_rewritten_loses_nothing(tmp_path, monkeypatch):
    """The rewrite of a partial last chunk is journalled first: killed after the journal
    and before (or during) the write in place, the file is repaired when next opened."""
    key = os.urandom(32)
    path = tmp_path / "stream.enc"
    f = ChunkedFile(path, key, chunk_size=100)
    f.append(b"x" * 150)  # chunk 1 holds 50 committed bytes

    real_write = ChunkedFile._write_at

    def torn(self, offset, data, truncate=False):
        real_write(self, offset, data[: len(data) // 3], truncate=True)  # half a record
        raise OSError("killed")

    monkeypatch.setattr(ChunkedFile, "_write_at", torn)
    with pytest.raises(OSError, match="killed"):
        f.append(b"y" * 30)
    monkeypatch.setattr(ChunkedFile, "_write_at", real_write)
    assert (tmp_path / "stream.enc.tail").exists()
    repaired = ChunkedFile(path, key)
    assert repaired.read() == b"x" * 150 + b"y" * 30  # the journalled append completed
    assert not (tmp_path / "stream.enc.tail").exists()

    # A journal torn itself (the crash came before it was complete): the file's own
    # chunk was never touched, and the journal is dropped.
    (tmp_path / "stream.enc.tail").write_bytes(b"\x01" + bytes(8) + b"junk" * 10)
    assert ChunkedFile(path, key).read() == b"x" * 150 + b"y" * 30


def test_a_torn_append_past_the_committed_chunks_is_cut_by_its_owner(tmp_path):
    """Whole new chunks are written in place without the journal; a crash can leave the
    last one torn. An owner that knows what it committed drops it (the memory's rows) or
    truncates to its committed length (the stream); nothing before it is touched."""
    import torch

    from longnet.memory.rows import RowStore
    from vault import remember

    key = os.urandom(32)
    path = tmp_path / "rows.enc"
    f = ChunkedFile(path, key, chunk_size=100)
    f.append(b"a" * 200)  # two whole chunks
    with open(path, "ab") as handle:
        handle.write(os.urandom(NONCE + 40))  # a third, torn: nonce and part of its bytes
    assert len(ChunkedFile(path, key)) > 200
    with pytest.raises(TamperedChunk):
        ChunkedFile(path, key).read(150, 210)
    assert ChunkedFile(path, key).drop_torn_tail() > 0
    assert ChunkedFile(path, key).read() == b"a" * 200
    assert ChunkedFile(path, key).drop_torn_tail() == 0  # a whole last chunk stays

    home = tmp_path / "home"
    (home / "memory").mkdir(parents=True)
    create(home, "rows", FAST)
    remember(home, unlock(home, "rows"))
    rows = RowStore(home / "memory" / "rows.f16", layers=2, kv_heads=1, head_dim=4)
    written = torch.randn(2048, 2, 2, 1, 4).half()  # 32 bytes a row: one whole chunk
    rows.append(written)
    with open(rows.path, "ab") as handle:  # the next append's new chunk, torn
        handle.write(os.urandom(NONCE + TAG + 64))
    reopened = RowStore(home / "memory" / "rows.f16", layers=2, kv_heads=1, head_dim=4)
    assert reopened.end == 2048
    assert torch.equal(reopened.read(0, 2048), written.permute(1, 2, 3, 0, 4))


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_plain_and_encrypted_files_behave_the_same(tmp_path, encrypted):
    """What the stream and the rows need: append, overwrite in place (forgetting zeroes a
    span), cut back, read any range; encrypted, the old bytes are gone from the disk."""
    from vault import Files

    files = Files(os.urandom(32) if encrypted else None)
    path = tmp_path / "f"
    f = files.open(path)
    secret = b"the door code is 4812. " * 10
    f.append(b"A" * 70_000 + secret + b"B" * 100)
    start = 70_000
    f.write_at(start, bytes(len(secret)))  # forget the secret
    assert f.read(start - 2, start + len(secret) + 2) == b"AA" + bytes(len(secret)) + b"BB"
    assert b"4812" not in path.read_bytes()
    assert (b"A" * 64 in path.read_bytes()) is not encrypted
    f.write_at(f.size() - 50, b"C" * 80)  # past the end: overwritten, then appended
    assert f.read(f.size() - 81, f.size()) == b"B" + b"C" * 80
    f.truncate(10)
    assert files.open(path).read() == b"A" * 10
    with pytest.raises(ValueError):
        f.write_at(11, b"x")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_safetensors_through_the_files(tmp_path, encrypted):
    import torch
    from safetensors.torch import load_file

    from vault import Files

    files = Files(os.urandom(32) if encrypted else None)
    tensors = {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
               "b": torch.ones(5, dtype=torch.bfloat16), "empty": torch.zeros(0, 2)}
    files.write_tensors(tmp_path / "s.safetensors", tensors, metadata={"v": "1"})
    back = files.read_tensors(tmp_path / "s.safetensors")
    assert back.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor) and back[name].dtype == tensor.dtype
    if not encrypted:  # the plain file is a real safetensors file
        assert torch.equal(load_file(str(tmp_path / "s.safetensors"))["a"], tensors["a"])


def test_a_crash_while_a_span_is_overwritten_is_redone(tmp_path, monkeypatch):
    key = os.urandom(32)
    path = tmp_path / "f.enc"
    f = ChunkedFile(path, key, chunk_size=100)
    f.append(b"s" * 250)
    real_write = ChunkedFile._write_at

    def torn(self, offset, data, truncate=False):
        real_write(self, offset, data[:10], truncate=False)
        raise OSError("killed")

    monkeypatch.setattr(ChunkedFile, "_write_at", torn)
    with pytest.raises(OSError):
        f.write_at(120, bytes(20))  # zero a span inside chunk 1
    monkeypatch.setattr(ChunkedFile, "_write_at", real_write)
    assert ChunkedFile(path, key).read() == b"s" * 120 + bytes(20) + b"s" * 110


def test_an_unlocked_home_opens_its_databases_with_sqlcipher(tmp_path):
    """What memex.db and the chat database will go through: with the home unlocked, a
    SQLCipher 4 database (FTS5 and WAL included, sqlite-utils unchanged) whose files hold
    no plaintext; another key opens nothing; outside the home, plain SQLite."""
    import sqlite_utils

    from vault import connect, forget_key, key_for, remember

    home = tmp_path / "home"
    home.mkdir()
    key = create(home, "a passphrase", FAST)
    remember(home, key)
    try:
        assert key_for(home / "memory" / "rows.f16") == key and key_for(tmp_path) is None
        db = sqlite_utils.Database(connect(home / "memex.db", check_same_thread=False))
        db.execute("PRAGMA journal_mode=WAL")
        db["entries"].insert({"id": 1, "text": "the planted phrase marmalade lighthouse"},
                             pk="id")
        db["entries"].enable_fts(["text"])
        hits = db.execute("select rowid from entries_fts where entries_fts match "
                          "'lighthouse'").fetchall()
        assert hits == [(1,)]
        db.conn.commit()
        on_disk = b"".join(p.read_bytes() for p in home.glob("memex.db*"))
        assert b"marmalade" not in on_disk and b"lighthouse" not in on_disk
        db.conn.close()
        remember(home, os.urandom(32))  # the wrong key
        with pytest.raises(WrongPassphrase):
            connect(home / "memex.db")
    finally:
        forget_key(home)
    plain = connect(tmp_path / "plain.db")
    plain.execute("create table t (a)")
    plain.close()
    assert (tmp_path / "plain.db").read_bytes().startswith(b"SQLite format 3")
