"""The client side of the warm server: find a trusted server for this data home, start one
when there is none, replace one of another version or settings, and stream a request's
messages. Imports nothing heavy: a warm `memex ask` pays for this module and the socket.

``open_server`` returns None whenever the server cannot be used (no Unix sockets, a path
too long for one, ``MEMEX_NO_SERVER`` set, the ``server`` setting off, a server that does
not come up): the command then answers in-process, as before the server existed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from assistant.server.protocol import (
    LOG_NAME,
    ProtocolError,
    identity,
    receive,
    send,
    socket_path,
    socket_usable,
)

START_WAIT_S = 20.0  # a new server binds its socket within a second or two; loads come later
HELLO_TIMEOUT_S = 5.0


class ServerUnavailable(RuntimeError):
    """No trusted server could be reached; the caller answers in-process."""


def _connect(home: Path, timeout: float | None = HELLO_TIMEOUT_S) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(socket_path(home)))
    except OSError:
        conn.close()
        raise
    return conn


def hello(home: Path) -> dict | None:
    """The running server's hello (identity, pid, ready), or None when none answers."""
    if not socket_path(home).exists():
        return None
    try:
        with _connect(home) as conn, conn.makefile("rwb") as stream:
            send(stream, {"op": "hello"})
            return receive(stream)
    except (OSError, ProtocolError):
        return None


def stop_server(home: Path, wait_s: float = 10.0) -> int | None:
    """Ask this home's server to stop and wait for its socket to go. Its pid, or None."""
    try:
        with _connect(home) as conn, conn.makefile("rwb") as stream:
            send(stream, {"op": "stop"})
            pid = receive(stream).get("pid")
    except (OSError, ProtocolError):
        return None
    deadline = time.monotonic() + wait_s
    while socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def server_enabled(home: Path) -> bool:
    if os.environ.get("MEMEX_NO_SERVER") or not hasattr(socket, "AF_UNIX"):
        return False
    if not socket_usable(home):
        return False
    from assistant.config import ConfigError, load_config

    try:
        return load_config(home).server
    except ConfigError:
        return False  # in-process, where the error is reported as it always was


def start_server(home: Path) -> subprocess.Popen:
    """A detached `memex serve` for ``home``, its output in ``serve.log``. The data key of
    an encrypted home goes to it through a pipe it inherits (never its arguments, its
    environment or the disk); it then keeps its log encrypted itself."""
    import vault
    from assistant.config import load_config

    idle = load_config(home).server_idle_minutes
    key = vault.key_for(Path(home) / LOG_NAME)  # ``Locked`` if the caller did not unlock
    command = [sys.executable, "-m", "assistant.cli", "--home", str(home), "serve",
               "--idle", str(idle)]
    # A passphrase given to this command for a script is not the server's to keep.
    env = {name: value for name, value in os.environ.items()
           if name not in ("MEMEX_PASSPHRASE", "MEMEX_NEW_PASSPHRASE")}
    if key is None:
        log = os.open(Path(home) / LOG_NAME, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True, env=env)
        finally:
            os.close(log)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, key)  # 32 bytes: far below a pipe's buffer
        os.close(write_end)
        write_end = None
        return subprocess.Popen([*command, "--key-fd", str(read_end)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, pass_fds=(read_end,), env=env)
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)


def open_server(home: Path, start: bool = True, unlock=None) -> Path | None:
    """This home's trusted server, started (``start``) or replaced when need be; None when
    the command should answer in-process. ``unlock()`` is called before a server is
    started for an encrypted home (a running one holds the key already)."""
    home = Path(home)
    if not server_enabled(home):
        return None
    want = identity(home)
    found = hello(home)
    if found is not None and found.get("identity") != want:
        stop_server(home)  # another version or other settings: never trusted
        found = None
    if found is not None:
        return home
    if not start:
        return None
    if unlock is not None:
        unlock()
    try:
        process = start_server(home)
    except OSError:
        return None
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        found = hello(home)
        if found is not None:
            return home if found.get("identity") == want else None
        if process.poll() not in (None, 3):  # it failed (3: another one is starting)
            return None
        time.sleep(0.05)
    return None


def request(home: Path, message: dict) -> Iterator[dict]:
    """Send one request and yield the server's messages up to its last ("done" or
    "error"). ``ServerUnavailable`` if it cannot be sent or the server goes quiet before
    answering anything."""
    try:
        conn = _connect(home, timeout=None)  # an answer may wait for the model's load
    except OSError as exc:
        raise ServerUnavailable(str(exc)) from None
    with contextlib.closing(conn), conn.makefile("rwb") as stream:
        try:
            send(stream, message)
        except OSError as exc:
            raise ServerUnavailable(str(exc)) from None
        said_anything = False
        while True:
            try:
                reply = receive(stream)
            except (OSError, ProtocolError) as exc:
                if not said_anything:
                    raise ServerUnavailable(str(exc)) from None
                raise ProtocolError(f"the warm server stopped answering: {exc}") from None
            said_anything = True
            yield reply
            if "done" in reply or "error" in reply:
                return
