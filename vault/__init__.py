"""Encryption at rest (issue 21), the part every other package can build on: the data
home's keys (``keys``: a random data key wrapped by an Argon2id key of the passphrase) and
files encrypted in authenticated chunks that can be appended to, overwritten and read at
any offset (``chunks``), and one interface over plain and encrypted files, safetensors
included (``files``). It imports nothing of memex."""

from vault.chunks import ChunkedFile, TamperedChunk
from vault.files import Files, PlainFile
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

__all__ = [
    "ChunkedFile",
    "Files",
    "KdfParams",
    "PlainFile",
    "TamperedChunk",
    "VaultError",
    "WrongPassphrase",
    "change_passphrase",
    "create",
    "is_encrypted",
    "tune",
    "unlock",
]
