"""What the warm server and its clients agree on: where the socket is, who may talk to
it, which server may be trusted, and the messages (one JSON object a line).

- The socket is ``serve.sock`` inside the data home (a 0700 folder), itself 0600, and
  the server answers only a peer of its own uid (``SO_PEERCRED`` where the OS has it).
- A server is trusted only when its identity equals the client's: the same memex version,
  the same settings file, the same data home and vault header. Anything else is stopped
  and replaced.
- A server of an encrypted home holds its data key in memory only, handed over by the
  client that started it through an inherited pipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from pathlib import Path

SOCKET_NAME = "serve.sock"
LOG_NAME = "serve.log"
IDLE_STOP_S = 15 * 60  # a server nobody asked for this long exits (``memex serve --idle``)
# AF_UNIX paths are limited (108 bytes on Linux, 104 on macOS, the terminating NUL counted).
MAX_SOCKET_PATH = 103


class ProtocolError(RuntimeError):
    """The other side said something this side cannot read, or nothing at all."""


def socket_path(home: Path) -> Path:
    return Path(home) / SOCKET_NAME


def socket_usable(home: Path) -> bool:
    """Whether a socket can live at its place in this home (the path's length)."""
    return len(os.fsencode(str(socket_path(home)))) <= MAX_SOCKET_PATH


def memex_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memex")
    except PackageNotFoundError:
        return "unknown"


def identity(home: Path) -> dict:
    """What a client must find in a server before trusting it with a question."""
    from assistant.config import config_path

    try:
        settings = config_path(home).read_bytes()
    except OSError:
        settings = b""
    # A reader `memex train` wrote after the server loaded its model is not in that model.
    reader = Path(home) / "reader"
    try:
        reader_stamp = max((f.stat().st_mtime_ns for f in reader.iterdir()), default=0)
    except OSError:
        reader_stamp = 0
    # Encrypting, decrypting or a new passphrase: the old server must not be trusted.
    try:
        vault_header = hashlib.sha256((Path(home) / "vault.json").read_bytes()).hexdigest()[:16]
    except OSError:
        vault_header = ""
    return {"memex": memex_version(), "home": str(Path(home).resolve()),
            "config": hashlib.sha256(settings).hexdigest()[:16], "reader": reader_stamp,
            "models": os.environ.get("MEMEX_MODEL_CACHE", ""), "vault": vault_header}


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, where the OS tells it."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is not None:
        creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    if hasattr(os, "getpeereid"):  # the BSDs, macOS (Python 3.x does not expose it: rare)
        return os.getpeereid(conn.fileno())[1]
    return None  # then the socket's 0600 mode and the 0700 home are the only guard


def send(stream, message: dict) -> None:
    stream.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
    stream.flush()


def receive(stream) -> dict:
    line = stream.readline()
    if not line:
        raise ProtocolError("the other side closed the connection")
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"unreadable message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message
