"""Encryption at rest (issue 21), the part every other package can build on: the data
home's keys (``keys``: a random data key wrapped by an Argon2id key of the passphrase) and
files encrypted in authenticated chunks that can be appended to and read at any offset
(``chunks``). It imports nothing of memex."""

from vault.chunks import ChunkedFile, TamperedChunk
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
    "KdfParams",
    "TamperedChunk",
    "VaultError",
    "WrongPassphrase",
    "change_passphrase",
    "create",
    "is_encrypted",
    "tune",
    "unlock",
]
