"""Converting a data home between plain and encrypted, in place and crash-safe: a SIGKILL at
any moment leaves a home that opens in its old form or its new one, with nothing lost.

How: every file is first written converted beside itself (``<name>.vault-new``, fsynced)
while the originals stay untouched. One rename commits the change: ``vault.json`` comes
into place (encrypting) or goes aside (decrypting). Only then are the converted files
renamed over the originals. A marker (``.vault-convert.json``) says a conversion is under
way and in which direction; ``recover`` — run before a home is opened — finishes one that
committed (renames only: it needs no key) or removes the remains of one that did not.

SQLite databases are converted by SQLCipher's own ``sqlcipher_export`` (schema, rows, FTS5
tables and ``user_version``); every other file becomes (or stops being) a ``ChunkedFile``.
The public model weights (``models/``), ``config.toml``, the locks and the socket stay as
they are. The old plaintext files are unlinked, not overwritten: their blocks stay on the
disk until reused, which a README note says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from vault.chunks import ChunkedFile
from vault.files import PlainFile, fsync_folder, is_chunked
from vault.keys import HEADER_NAME, VaultError, header_path

MARKER = ".vault-convert.json"
NEW = ".vault-new"
RETIRED = HEADER_NAME + ".retired"
SQLITE_MAGIC = b"SQLite format 3\x00"
COPY_BYTES = 4 << 20
KEEP_NAMES = {HEADER_NAME, "config.toml", MARKER, RETIRED}
KEEP_SUFFIXES = (".lock", ".sock", "-wal", "-shm", NEW)
KEEP_FOLDERS = {"models"}  # public weights and what is computed from them alone


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def home_files(home: Path) -> list[Path]:
    """The files of ``home`` a conversion rewrites (stale temporary files are removed)."""
    found = []
    for folder, folders, names in os.walk(home):
        here = Path(folder)
        if here == home:
            folders[:] = [f for f in folders if f not in KEEP_FOLDERS]
        for name in names:
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            if name.startswith(".") and name.endswith(".tmp"):
                path.unlink()  # a killed write's leftover: never anything committed
                continue
            if (here == home and name in KEEP_NAMES) or name.endswith(KEEP_SUFFIXES):
                continue
            if name.endswith(".tail"):
                continue  # a chunked file's journal, redone when that file is opened
            found.append(path)
    return sorted(found)


def _sqlcipher():
    try:
        import sqlcipher3
    except ImportError:
        raise VaultError("an encrypted data home needs SQLCipher: "
                         "pip install sqlcipher3-binary") from None
    return sqlcipher3


def _export_database(source: Path, target: Path, source_key: bytes | None,
                     target_key: bytes | None) -> None:
    """``source`` copied into a new database at ``target``, keyed (or plain) as asked."""
    sqlcipher3 = _sqlcipher()
    target.unlink(missing_ok=True)
    conn = sqlcipher3.connect(str(source))
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        if source_key is not None:
            conn.execute(f"PRAGMA key = \"x'{source_key.hex()}'\"")
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        key = f"\"x'{target_key.hex()}'\"" if target_key is not None else "''"
        conn.execute(f"ATTACH DATABASE ? AS converted KEY {key}", [str(target)])
        conn.execute("SELECT sqlcipher_export('converted')").fetchall()
        conn.execute(f"PRAGMA converted.user_version = {int(version)}")
        conn.commit()
        conn.execute("DETACH DATABASE converted")
    finally:
        conn.close()
    PlainFile(target).sync()


def _copy(read_size: Callable[[], int], read: Callable[[int, int], bytes], append) -> None:
    size = read_size()
    for start in range(0, size, COPY_BYTES):
        append(read(start, min(size, start + COPY_BYTES)))


def _encrypt_file(path: Path, target: Path, key: bytes) -> None:
    target.unlink(missing_ok=True)
    if _is_sqlite(path):
        _export_database(path, target, None, key)
        return
    source, out = PlainFile(path), ChunkedFile(target, key)
    _copy(source.size, source.read, out.append)


def _decrypt_file(path: Path, target: Path, key: bytes) -> bool:
    """Write ``path``'s plaintext to ``target``; False when ``path`` is plain already."""
    target.unlink(missing_ok=True)
    if is_chunked(path):
        source = ChunkedFile(path, key)
        fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            _copy(source.size, source.read, lambda data: os.write(fd, data))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    if path.suffix == ".db" and not _is_sqlite(path):
        _export_database(path, target, key, None)
        return True
    return False


def _write_marker(home: Path, direction: str) -> None:
    path = home / MARKER
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"to": direction}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_folder(home)


def _put_in_place(home: Path) -> None:
    """Rename every converted file over its original (what follows the commit)."""
    for folder, _, names in os.walk(home):
        for name in names:
            if not name.endswith(NEW) or name == HEADER_NAME + NEW:
                continue
            converted = Path(folder) / name
            original = converted.with_name(name[:-len(NEW)])
            for side in ("-wal", "-shm"):  # a log of the old database means nothing now
                original.with_name(original.name + side).unlink(missing_ok=True)
            os.replace(converted, original)
            fsync_folder(folder)


def _remove_converted(home: Path) -> None:
    for folder, _, names in os.walk(home):
        for name in names:
            if name.endswith(NEW):
                (Path(folder) / name).unlink()


def recover(home: Path | str) -> str | None:
    """Finish (after its commit) or undo (before it) a conversion a crash interrupted.
    Returns what was done ("encrypted", "plain", "undone") or None when nothing was."""
    home = Path(home)
    marker = home / MARKER
    if not marker.is_file():
        return None
    try:
        direction = json.loads(marker.read_text()).get("to")
    except (OSError, ValueError):
        direction = None  # a torn marker: it was written before anything else
    committed = (direction == "encrypted" and header_path(home).is_file()) or \
        (direction == "plain" and not header_path(home).is_file()
         and (home / RETIRED).is_file())
    if committed:
        _put_in_place(home)
        (home / RETIRED).unlink(missing_ok=True)
        done = direction
    else:
        _remove_converted(home)
        done = "undone"
    marker.unlink()
    fsync_folder(home)
    return done


def encrypt_home(home: Path | str, key: bytes, header: bytes,
                 progress: Callable[[str], None] | None = None) -> int:
    """Encrypt every file of plain ``home`` with ``key``; ``header`` is the new
    ``vault.json`` (the key wrapped by the passphrase). The caller holds the home's locks.
    Returns the number of files converted."""
    home = Path(home)
    recover(home)
    if header_path(home).is_file():
        raise VaultError(f"{home} is encrypted already")
    _write_marker(home, "encrypted")
    files = home_files(home)
    for path in files:
        if progress:
            progress(str(path.relative_to(home)))
        _encrypt_file(path, path.with_name(path.name + NEW), key)
    staged = home / (HEADER_NAME + NEW)
    fd = os.open(staged, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, header)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(staged, header_path(home))  # the commit
    fsync_folder(home)
    recover(home)
    return len(files)


def decrypt_home(home: Path | str, key: bytes,
                 progress: Callable[[str], None] | None = None) -> int:
    """Decrypt every file of ``home`` (unlocked with ``key``) back to plain files."""
    home = Path(home)
    recover(home)
    if not header_path(home).is_file():
        raise VaultError(f"{home} is not encrypted")
    _write_marker(home, "plain")
    converted = 0
    for path in home_files(home):
        if progress:
            progress(str(path.relative_to(home)))
        if _decrypt_file(path, path.with_name(path.name + NEW), key):
            converted += 1
    os.replace(header_path(home), home / RETIRED)  # the commit
    fsync_folder(home)
    recover(home)
    return converted
