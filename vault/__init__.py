"""Encryption at rest (issue 21), the part every other package can build on: the data
home's keys (``keys``: a random data key wrapped by an Argon2id key of the passphrase) and
files encrypted in authenticated chunks that can be appended to, overwritten and read at
any offset (``chunks``), and one interface over plain and encrypted files, safetensors
included (``files``); the keys of the homes this process unlocked, and the files and
databases opened with them (``session``). It imports nothing of memex."""

from vault.chunks import ChunkedFile, TamperedChunk
from vault.files import Files, PlainFile, fsync_folder, is_chunked
from vault.keys import (
    KdfParams,
    VaultError,
    WrongPassphrase,
    change_passphrase,
    create,
    is_encrypted,
    tune,
    unlock,
)
from vault.session import (
    Locked,
    connect,
    database_errors,
    files_for,
    forget_key,
    is_unlocked,
    key_for,
    remember,
)

__all__ = [
    "ChunkedFile",
    "Files",
    "KdfParams",
    "Locked",
    "PlainFile",
    "TamperedChunk",
    "VaultError",
    "WrongPassphrase",
    "change_passphrase",
    "connect",
    "create",
    "database_errors",
    "files_for",
    "forget_key",
    "fsync_folder",
    "is_chunked",
    "is_encrypted",
    "is_unlocked",
    "key_for",
    "remember",
    "tune",
    "unlock",
]
