"""The data home's keys: a random 256-bit data key encrypts everything; a key derived from
the passphrase (Argon2id) wraps it. Changing the passphrase re-wraps the data key and
rewrites nothing else. The passphrase itself is never written anywhere.

``vault.json`` in the data home holds the Argon2id parameters (salt, time and memory
cost, lanes) and the wrapped data key (AES-256-GCM, its nonce beside it). Without the
passphrase it is of no use: a lost passphrase is lost data.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HEADER_NAME = "vault.json"
FORMAT = 1
KEY_BYTES = 32
WRAP_CONTEXT = b"memex data key v1"
TARGET_SECONDS = 0.5  # Argon2id tuned to about this long on the machine that sets it
MEMORY_KIB = 64 * 1024  # 64 MiB: RFC 9106's second recommended setting's memory


class VaultError(RuntimeError):
    """The vault header is missing, damaged or of an unknown format."""


class WrongPassphrase(VaultError):
    """The passphrase does not open this data home."""


@dataclass(frozen=True)
class KdfParams:
    salt: str  # base64, 16 random bytes
    time_cost: int
    memory_kib: int
    lanes: int

    @classmethod
    def fresh(cls, time_cost: int = 3, memory_kib: int = MEMORY_KIB, lanes: int = 1) -> KdfParams:
        return cls(base64.b64encode(os.urandom(16)).decode(), time_cost, memory_kib, lanes)


def derive(passphrase: str, params: KdfParams) -> bytes:
    """The key-encryption key: Argon2id of the passphrase (UTF-8) with ``params``."""
    from argon2.low_level import Type, hash_secret_raw

    if not passphrase:
        raise WrongPassphrase("an empty passphrase cannot protect anything")
    return hash_secret_raw(passphrase.encode(), base64.b64decode(params.salt),
                           time_cost=params.time_cost, memory_cost=params.memory_kib,
                           parallelism=params.lanes, hash_len=KEY_BYTES, type=Type.ID)


def tune(target_s: float = TARGET_SECONDS, memory_kib: int = MEMORY_KIB) -> KdfParams:
    """Argon2id parameters that take about ``target_s`` here: the memory cost fixed, the
    number of passes raised until one derivation takes that long (at least 2)."""
    derive("warm", KdfParams.fresh(time_cost=1, memory_kib=memory_kib))  # first-use costs
    probe = KdfParams.fresh(time_cost=4, memory_kib=memory_kib)
    began = time.perf_counter()
    derive("tuning", probe)
    one_pass = max(1e-4, (time.perf_counter() - began) / probe.time_cost)
    return KdfParams.fresh(time_cost=max(2, round(target_s / one_pass)), memory_kib=memory_kib)


def header_path(home: Path | str) -> Path:
    return Path(home) / HEADER_NAME


def is_encrypted(home: Path | str) -> bool:
    return header_path(home).is_file()


def _wrap(kek: bytes, data_key: bytes) -> dict:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, WRAP_CONTEXT)
    return {"nonce": base64.b64encode(nonce).decode(),
            "wrapped_key": base64.b64encode(wrapped).decode()}


def _write_header(home: Path, header: dict) -> None:
    """Atomically: a temporary file, fsynced, renamed over the old header."""
    path = header_path(home)
    temp = path.with_name(f".{HEADER_NAME}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, header_bytes(header))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(home, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_header(home: Path) -> dict:
    try:
        header = json.loads(header_path(home).read_text())
    except FileNotFoundError:
        raise VaultError(f"{home} is not encrypted (no {HEADER_NAME})") from None
    except (OSError, ValueError) as exc:
        raise VaultError(f"{header_path(home)} is damaged: {exc}") from None
    if header.get("format") != FORMAT:
        raise VaultError(f"{header_path(home)} has format {header.get('format')!r}; this "
                         f"memex reads format {FORMAT}")
    return header


def create(home: Path | str, passphrase: str, params: KdfParams | None = None) -> bytes:
    """A new random data key for ``home``, wrapped by ``passphrase``; returns the key."""
    home = Path(home)
    if is_encrypted(home):
        raise VaultError(f"{home} already has a vault header")
    data_key, header = new_header(passphrase, params)
    _write_header(home, header)
    return data_key


def new_header(passphrase: str, params: KdfParams | None = None) -> tuple[bytes, dict]:
    """A new random data key and the header that wraps it with ``passphrase`` (not yet
    written anywhere: ``memex encrypt`` writes it as its commit)."""
    params = params or tune()
    data_key = os.urandom(KEY_BYTES)
    header = {"format": FORMAT, "kdf": "argon2id", "params": asdict(params),
              "cipher": "aes-256-gcm", **_wrap(derive(passphrase, params), data_key)}
    return data_key, header


def header_bytes(header: dict) -> bytes:
    return json.dumps(header, indent=2).encode()


def unlock(home: Path | str, passphrase: str) -> bytes:
    """The data key of ``home``; ``WrongPassphrase`` when it does not open it."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = _read_header(Path(home))
    try:
        params = KdfParams(**header["params"])
        nonce = base64.b64decode(header["nonce"])
        wrapped = base64.b64decode(header["wrapped_key"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VaultError(f"{header_path(home)} is damaged: {exc}") from None
    try:
        return AESGCM(derive(passphrase, params)).decrypt(nonce, wrapped, WRAP_CONTEXT)
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase: nothing was read or changed") from None


def change_passphrase(home: Path | str, old: str, new: str,
                      params: KdfParams | None = None) -> None:
    """Re-wrap the data key under ``new`` (fresh salt); no data is rewritten. A crash
    leaves the old header or the new one, never neither."""
    home = Path(home)
    data_key = unlock(home, old)
    header = _read_header(home)
    params = params or tune()
    header.update({"params": asdict(params), **_wrap(derive(new, params), data_key)})
    _write_header(home, header)
