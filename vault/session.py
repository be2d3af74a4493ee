"""The data keys of the homes this process has unlocked, in memory only (never written,
never logged), and what every layer opens a home's files and databases with: ``files_for``
(plain or encrypted files) and ``connect`` (SQLite, or SQLCipher 4 with the home's key).
A path belongs to an unlocked home when the home is one of its folders."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from vault.files import Files
from vault.keys import HEADER_NAME, VaultError, WrongPassphrase


class Locked(VaultError):
    """A file of an encrypted data home that this process has not unlocked."""

_keys: dict[Path, bytes] = {}
_lock = threading.Lock()


def remember(home: Path | str, key: bytes) -> None:
    with _lock:
        _keys[Path(home).resolve()] = bytes(key)


def forget_key(home: Path | str) -> None:
    with _lock:
        _keys.pop(Path(home).resolve(), None)


def key_for(path: Path | str) -> bytes | None:
    """The data key of the unlocked home that holds ``path``; None when ``path`` is in no
    encrypted home. ``Locked`` when it is in one this process has not unlocked: its
    files must never be read as plain bytes, nor plain bytes written among them."""
    resolved = Path(path).resolve()
    with _lock:
        for folder in (resolved, *resolved.parents):
            if folder in _keys:
                return _keys[folder]
    for folder in resolved.parents:
        if _holds_vault_header(folder):
            raise Locked(f"{folder} is an encrypted data home and is locked: give its "
                         "passphrase (MEMEX_PASSPHRASE, or the prompt)")
    return None


def _holds_vault_header(folder: Path) -> bool:
    """Whether ``folder`` is an encrypted data home: its ``vault.json`` is memex's header
    (another program's file of that name, in a folder above a plain home, is not)."""
    import json

    header = folder / HEADER_NAME
    if not header.is_file():
        return False
    try:
        data = json.loads(header.read_bytes()[:65536])
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kdf") == "argon2id" and "wrapped_key" in data


def is_unlocked(home: Path | str) -> bool:
    with _lock:
        return Path(home).resolve() in _keys


def files_for(path: Path | str) -> Files:
    return Files(key_for(path))


def connect(path: Path | str, **kwargs):
    """A DB-API connection to the database at ``path``: SQLCipher 4 keyed with its home's
    data key when that home is unlocked, Python's sqlite3 otherwise. ``WrongPassphrase``
    when the key does not open an existing database (nothing is written)."""
    key = key_for(path)
    if key is None:
        return sqlite3.connect(str(path), **kwargs)
    try:
        import sqlcipher3
    except ImportError:
        raise VaultError("an encrypted data home needs SQLCipher: "
                         "pip install sqlcipher3-binary") from None
    conn = sqlcipher3.connect(str(path), **kwargs)
    conn.execute("PRAGMA cipher_log_level = NONE")  # errors are ours to report
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")  # a raw key: no second KDF
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA temp_store = MEMORY")  # no temporary files beside it
    except sqlcipher3.DatabaseError:
        conn.close()
        raise WrongPassphrase(f"{path} does not open with this data home's key") from None
    return conn


def database_errors() -> tuple[type[Exception], ...]:
    """The DatabaseError classes a connection from ``connect`` may raise."""
    errors: list[type[Exception]] = [sqlite3.DatabaseError]
    try:
        import sqlcipher3

        errors.append(sqlcipher3.DatabaseError)
    except ImportError:
        pass
    return tuple(errors)
