"""The warm server (issue 19): `memex ask` and `memex reflect` answered by a background
process that keeps the model loaded, on a private socket, replaced when it is not to be
trusted, stopped when idle or asked; in-process when no server can be used."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
from test_engine import journal_home, tiny_model_dir  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from assistant.cli import app
from assistant.server import client
from assistant.server.protocol import identity, peer_uid, socket_path
from assistant.server.server import WarmServer

runner = CliRunner()
QUESTION = "What did I order at Café Lune?"


@pytest.fixture
def servers_on(monkeypatch):
    monkeypatch.delenv("MEMEX_NO_SERVER", raising=False)


def start_in_thread(home, idle_s: float = 60.0) -> tuple[WarmServer, threading.Thread]:
    server = WarmServer(home, idle_s=idle_s)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while client.hello(home) is None:
        assert time.monotonic() < deadline, "the server never answered"
        time.sleep(0.05)
    return server, thread


def conversation_rows(home) -> list[tuple[str, str, str]]:
    import sqlite3

    from assistant.engine.conversations import ConversationStore

    path = ConversationStore(home).path
    with sqlite3.connect(path) as db:
        return db.execute("select role, content, status from messages order by id").fetchall()


def test_ask_and_reflect_go_through_the_warm_server(journal_home, servers_on):
    server, thread = start_in_thread(journal_home)
    try:
        mode = stat.S_IMODE(os.stat(socket_path(journal_home)).st_mode)
        assert mode == 0o600  # the owner alone may connect
        result = runner.invoke(app, ["--home", str(journal_home), "ask", QUESTION,
                                     "--mode", "retrieval"])
        assert result.exit_code == 0, result.output
        assert "· warm" in result.output and "daily/2024-02-10.md" in result.output
        # The turn is recorded as an in-process ask records it.
        roles = [(role, status) for role, _, status in conversation_rows(journal_home)]
        assert roles[-2:] == [("user", "complete"), ("assistant", "complete")]
        as_json = runner.invoke(app, ["--home", str(journal_home), "ask", QUESTION,
                                      "--mode", "retrieval", "--json"])
        payload = json.loads(as_json.stdout)
        assert set(payload) >= {"answer", "short", "quotes", "sources", "timings"}
        assert "notes" not in payload and "status" not in payload  # the --json contract
        reflection = runner.invoke(app, ["--home", str(journal_home), "reflect", "--json",
                                         "--since", "2024-02-01", "--until", "2024-02-29"])
        assert reflection.exit_code == 0, reflection.output
        assert json.loads(reflection.stdout)["entries"] > 0
        # One engine served every request: nothing was loaded in this process's engine.
        assert server.engine is not None and server.engine._tokenizer is not None
    finally:
        server.stopping.set()
        thread.join(10)
    assert not socket_path(journal_home).exists()


def test_a_server_of_other_settings_is_replaced_not_trusted(journal_home, servers_on):
    from assistant.config import set_value

    server, thread = start_in_thread(journal_home)
    try:
        assert client.open_server(journal_home, start=False) == journal_home
        set_value(journal_home, "passages", "5")  # the settings changed since it started
        assert client.hello(journal_home)["identity"] != identity(journal_home)
        assert client.open_server(journal_home, start=False) is None
        thread.join(10)
        assert not thread.is_alive()  # told to stop, it stopped
    finally:
        server.stopping.set()


def test_an_idle_server_stops_by_itself(journal_home, servers_on):
    _, thread = start_in_thread(journal_home, idle_s=0.5)
    thread.join(20)
    assert not thread.is_alive() and not socket_path(journal_home).exists()


def test_one_server_per_home(journal_home, servers_on):
    server, thread = start_in_thread(journal_home)
    try:
        assert WarmServer(journal_home).run() == 3  # the first holds the home
    finally:
        server.stopping.set()
        thread.join(10)


def test_peer_uid_is_ours():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_uid(left) in (os.getuid(), None)


def test_in_process_when_no_server_can_be_used(journal_home, servers_on, monkeypatch):
    from assistant.server import protocol

    monkeypatch.setattr(protocol, "MAX_SOCKET_PATH", 5)  # no socket fits this home's path
    assert client.open_server(journal_home) is None
    result = runner.invoke(app, ["--home", str(journal_home), "ask", QUESTION,
                                 "--mode", "retrieval"])
    assert result.exit_code == 0, result.output
    assert "daily/2024-02-10.md" in result.output and "· warm" not in result.output
    assert not socket_path(journal_home).exists()


def test_ask_starts_a_server_and_serve_stop_ends_it(journal_home, servers_on):
    """The real thing: `memex ask` in a process of its own starts `memex serve` in the
    background; the next ask is answered warm; `memex serve --stop` stops it."""
    env = {**os.environ, "MEMEX_HOME": str(journal_home)}
    env.pop("MEMEX_NO_SERVER", None)
    memex = [sys.executable, "-m", "assistant.cli"]

    def ask():
        return subprocess.run([*memex, "ask", QUESTION, "--mode", "retrieval"], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    try:
        first = ask()
        assert first.returncode == 0, first.stderr
        assert "· warm" in first.stdout
        found = client.hello(journal_home)
        assert found is not None and found["identity"] == identity(journal_home)
        second = ask()
        assert second.returncode == 0 and "· warm" in second.stdout
        assert client.hello(journal_home)["pid"] == found["pid"]  # the same server
        status = subprocess.run([*memex, "serve", "--status", "--json"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert json.loads(status.stdout)["running"] is True
    finally:
        stopped = subprocess.run([*memex, "serve", "--stop"], env=env, capture_output=True,
                                 text=True, timeout=60, check=False)
    assert "stopped the warm server" in stopped.stdout
    assert client.hello(journal_home) is None


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_chat_answers_through_the_warm_server(journal_home, servers_on):
    """`memex chat` with a warm server: the answer, its sources (whole text for the viewer)
    and the memory's upkeep come from the server; the chat records the turn itself."""
    from test_engine import make_engine
    from test_tui import _ask

    from assistant.server.remote import WarmEngine
    from assistant.tui.app import MemexApp
    from assistant.tui.message_view import MessageView

    server, thread = start_in_thread(journal_home)
    try:
        engine = WarmEngine(make_engine(journal_home))
        app = MemexApp(engine, mode="retrieval", watch=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await _ask(pilot, QUESTION)
            views = [v for v in pilot.app.screen.query(MessageView) if v.role == "assistant"]
            assert views and views[-1].status == "complete"
            source = views[-1].sources[0]
            assert source.path == "daily/2024-02-10.md" and "Café Lune" in source.text
        assert engine.local._tokenizer is None  # nothing was loaded in the chat's process
        assert server.engine._tokenizer is not None
        roles = [role for role, _, _ in conversation_rows(journal_home)]
        assert roles[-2:] == ["user", "assistant"]
        # The memory's upkeep runs in the server too; its progress reaches the chat.
        lines: list[str] = []
        engine.refresh(progress=lines.append)
        local = make_engine(journal_home)
        assert local.memory_info()["tokens"] == local.stream_tokens() > 0
        assert lines and lines[0].startswith("memory")
        assert engine.local._longnet is None
    finally:
        server.stopping.set()
        thread.join(10)


def test_stopping_a_warm_answer_keeps_it_partial_and_the_server_alive(journal_home,
                                                                      servers_on):
    from test_engine import make_engine

    from assistant.engine import Stopped
    from assistant.server.remote import WarmEngine

    server, thread = start_in_thread(journal_home)
    try:
        engine = WarmEngine(make_engine(journal_home))
        heard: list[str] = []

        def stop_at_once(piece: str) -> None:
            heard.append(piece)
            raise Stopped()  # as the chat's Stop does

        answer = engine.answer(QUESTION, "retrieval", on_token=stop_at_once)
        assert heard and answer.status == "partial" and answer.text == ""
        again = engine.answer(QUESTION, "retrieval")  # the server answers the next one
        assert again.status == "complete" and again.sources
    finally:
        server.stopping.set()
        thread.join(10)


def test_a_failure_in_the_server_is_an_error_not_a_stopped_answer(journal_home, servers_on):
    """An answer that fails for an unexpected reason is recorded as an error (not as a
    partial answer the person stopped) and reaches the client as a one-line error."""
    server, thread = start_in_thread(journal_home)
    try:
        while server.engine is None:
            time.sleep(0.01)

        def broken(*args, **kwargs):
            raise RuntimeError("boom")

        server.engine.answer = broken
        result = runner.invoke(app, ["--home", str(journal_home), "ask", QUESTION])
        assert result.exit_code == 1
        # (the server's own traceback goes to its log: here, this process's stderr)
        assert "error: the warm server failed: boom (see serve.log)" in result.output
        last = conversation_rows(journal_home)[-1]
        assert last[0] == "assistant" and last[2] == "error"
    finally:
        server.stopping.set()
        thread.join(10)


def test_an_encrypted_home_hands_its_key_to_the_server_through_a_pipe(journal_home,
                                                                      servers_on):
    """Encryption at rest (issue 21): the ask that starts the server unlocks the home and
    hands the data key over an inherited pipe; the next ask needs no passphrase (the
    server holds the key, in memory only, for its owner alone); the passphrase is not in
    the server's environment nor the key in its arguments; its log is encrypted too."""
    import vault
    from vault.convert import encrypt_home

    passphrase = "a long walk by the river"
    key, header = vault.keys.new_header(
        passphrase, vault.KdfParams.fresh(time_cost=1, memory_kib=1024))
    encrypt_home(journal_home, key, vault.keys.header_bytes(header))
    env = {**os.environ, "MEMEX_HOME": str(journal_home), "MEMEX_PASSPHRASE": passphrase}
    env.pop("MEMEX_NO_SERVER", None)
    memex = [sys.executable, "-m", "assistant.cli"]

    def ask(environment):
        return subprocess.run([*memex, "ask", QUESTION, "--mode", "retrieval"],
                              env=environment, capture_output=True, text=True, timeout=300,
                              check=False)

    try:
        locked = ask({k: v for k, v in env.items() if k != "MEMEX_PASSPHRASE"})
        assert locked.returncode == 2 and "MEMEX_PASSPHRASE" in locked.stderr
        assert client.hello(journal_home) is None  # nothing started without the key
        first = ask(env)
        assert first.returncode == 0, first.stderr
        assert "· warm" in first.stdout and "daily/2024-02-10.md" in first.stdout
        pid = client.hello(journal_home)["pid"]
        second = ask({k: v for k, v in env.items() if k != "MEMEX_PASSPHRASE"})
        assert second.returncode == 0 and "· warm" in second.stdout, second.stderr
        environ = open(f"/proc/{pid}/environ", "rb").read()  # noqa: SIM115
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()  # noqa: SIM115
        assert b"MEMEX_PASSPHRASE" not in environ and passphrase.encode() not in environ
        assert key.hex().encode() not in cmdline and key not in cmdline
    finally:
        subprocess.run([*memex, "serve", "--stop"], env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert client.hello(journal_home) is None
    log = journal_home / "serve.log"
    assert not log.exists() or vault.is_chunked(log)
    shown = subprocess.run([*memex, "serve", "--log"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr  # decrypted for its owner
    for path in journal_home.rglob("*"):
        if path.is_file() and path.name not in ("vault.json", "config.toml"):
            assert b"Caf\xc3\xa9 Lune" not in path.read_bytes(), path
