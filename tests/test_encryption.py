"""Encryption at rest (issue 21), end to end: an encrypted data home holds no byte of the
text it was given (nor its UTF-16 form, nor its token ids) after add, memory build, ask,
chat and train; a wrong passphrase changes nothing and exits 2; `memex encrypt` killed at
any point leaves a home that opens; a changed byte is an error that names the file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_engine import write_journal
from typer.testing import CliRunner

import vault
from assistant.cli import app
from vault.chunks import HEADER, NONCE

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"
FAST_KDF = vault.KdfParams.fresh(time_cost=1, memory_kib=1024)  # real Argon2id, cheap

# Ten phrases that occur nowhere but in the fixture journal.
PHRASES = [
    "quartz pelican lullaby", "marmalade zeppelin orchard", "violet harbour semaphore",
    "copper walrus sonata", "juniper lantern cartography", "saffron glacier mosaic",
    "tangerine obelisk whisper", "cobalt meadow accordion", "hazelnut comet tapestry",
    "indigo falcon marzipan",
]


def planted_journal(root: Path) -> Path:
    files = {}
    for day, phrase in enumerate(PHRASES, 1):
        files[f"daily/2024-03-{day:02d}.md"] = (
            f"# 2024-03-{day:02d}\n\nToday I wrote down the words {phrase} and kept them. "
            f"Later we walked by the river and talked about {phrase} until dark.\n")
    return write_journal(root, files)


def invoke(home, *args, passphrase: str | None = PASSPHRASE, env: dict | None = None):
    """The CLI in this process, as a fresh process would run it: the key forgotten."""
    vault.forget_key(home)
    environment = {"MEMEX_PASSPHRASE": passphrase, **(env or {})}
    return runner.invoke(app, ["--home", str(home), *args], env=environment)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def needles(tokenizer) -> list[tuple[str, bytes]]:
    """What must not be on disk: each phrase in UTF-8, UTF-16 (both orders), and its token
    ids as the stream keeps them (uint32) and as a torch int64 tensor would."""
    found = []
    for phrase in PHRASES:
        for form in (phrase, phrase.title()):
            found.append((phrase, form.encode()))
            found.append((phrase, form.encode("utf-16-le")))
            found.append((phrase, form.encode("utf-16-be")))
        for text in (f" {phrase}", phrase):
            ids = tokenizer.encode(text, add_special_tokens=False)
            found.append((phrase, np.asarray(ids, dtype="<u4").tobytes()))
            found.append((phrase, np.asarray(ids, dtype="<i8").tobytes()))
    return found


def leaks(home: Path, tokenizer) -> list[tuple[str, str]]:
    found = []
    checks = needles(tokenizer)
    for path in sorted(home.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [(str(path.relative_to(home)), phrase) for phrase, needle in checks
                      if needle in data]
    return found


def file_bytes(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture
def encrypted_home(tmp_path, home, tokenizer):
    """An encrypted home (cheap Argon2id) with the planted journal added, no embeddings."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    vault.create(home, PASSPHRASE, FAST_KDF)
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "config", "set", "embeddings", "false"))
    ok(invoke(home, "add", str(journal)))
    return home


def test_the_checks_would_see_the_text_of_a_plain_home(tmp_path, home, tokenizer):
    """The control: the same scan finds every phrase (as text and as token ids) in a plain
    home, so its silence on an encrypted one means something."""
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "config", "set", "embeddings", "false", passphrase=None))
    ok(invoke(home, "add", str(journal), passphrase=None))
    found = leaks(home, tokenizer)
    assert {phrase for _, phrase in found} == set(PHRASES)
    assert {"memex.db", "stream.u32"} <= {name for name, _ in found}


def test_an_encrypted_home_keeps_no_plaintext_and_works_the_same(encrypted_home, tokenizer):
    home = encrypted_home
    assert leaks(home, tokenizer) == []
    status = json.loads(ok(invoke(home, "status", "--json")).stdout)
    assert status["documents"] == 10 and status["stream_tokens"] > 0
    found = ok(invoke(home, "search", "zeppelin"))
    assert "2024-03-02" in found.output
    # SQLCipher, not SQLite: the database is noise to sqlite3.
    import sqlite3

    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(home / "memex.db").execute("select * from sqlite_master").fetchall()
    # The stream is whole when decrypted: the phrases' tokens are in it.
    import ingest

    vault.remember(home, vault.unlock(home, PASSPHRASE))
    store = ingest.open_store(home)
    ids = tokenizer.encode(f" {PHRASES[0]}", add_special_tokens=False)
    assert np.asarray(ids, dtype="<u4").tobytes() in store.stream.read().astype("<u4").tobytes()
    store.close()


def test_a_wrong_passphrase_exits_2_and_changes_nothing(encrypted_home):
    home = encrypted_home
    before = file_bytes(home)
    for command in (("status",), ("search", "zeppelin"), ("add", str(home.parent)),
                    ("memory", "status"), ("ask", "what words?"), ("forget", "--yes", str(home.parent)),
                    ("export", "--out", str(home.parent / "out")), ("decrypt",)):
        result = invoke(home, *command, passphrase="Correct horse battery staple")
        assert result.exit_code == 2, (command, result.output)
        assert result.output.strip().count("\n") == 0, result.output  # one line
        assert "wrong passphrase" in result.output
    without = invoke(home, "status", passphrase=None)  # no terminal to ask on, no variable
    assert without.exit_code == 2 and "MEMEX_PASSPHRASE" in without.output
    assert file_bytes(home) == before
    assert not (home.parent / "out").exists()


def test_a_locked_home_is_never_read_or_written_as_plain_files(encrypted_home):
    vault.forget_key(encrypted_home)
    with pytest.raises(vault.Locked, match="locked"):
        vault.files_for(encrypted_home / "stream.u32")
    with pytest.raises(vault.Locked):
        vault.connect(encrypted_home / "memex.db")


def test_another_programs_vault_json_above_a_plain_home_is_not_ours(tmp_path):
    (tmp_path / "vault.json").write_text('{"vaults": ["Obsidian"]}')
    home = tmp_path / "plain-home"
    home.mkdir()
    assert not vault.files_for(home / "stream.u32").encrypted


def test_a_flipped_byte_in_the_stream_is_an_error_naming_the_file(encrypted_home, tokenizer):
    import ingest
    from ingest.store import StreamError

    home = encrypted_home
    stream = home / "stream.u32"
    with open(stream, "r+b") as handle:  # a byte inside the first chunk's ciphertext
        handle.seek(HEADER.size + NONCE + 700)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x40]))
    vault.remember(home, vault.unlock(home, PASSPHRASE))
    store = ingest.open_store(home)
    with pytest.raises(StreamError, match=r"stream\.u32: chunk 0 does not decrypt"):
        store.stream.read(0, 10)
    store.close()


def test_passphrase_change_rewraps_the_key_and_rewrites_no_data(encrypted_home):
    home = encrypted_home
    before = {k: v for k, v in file_bytes(home).items() if k != "vault.json"}
    ok(invoke(home, "passphrase", "change", env={"MEMEX_NEW_PASSPHRASE": "new words here"}))
    assert {k: v for k, v in file_bytes(home).items() if k != "vault.json"} == before
    assert invoke(home, "status").exit_code == 2  # the old one opens nothing now
    assert ok(invoke(home, "status", "--json", passphrase="new words here"))
    wrong = invoke(home, "passphrase", "change", passphrase="nope",
                   env={"MEMEX_NEW_PASSPHRASE": "x"})
    assert wrong.exit_code == 2


def test_encrypt_then_decrypt_in_place_keeps_every_note(tmp_path, home, tokenizer):
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "config", "set", "embeddings", "false", passphrase=None))
    ok(invoke(home, "add", str(journal), passphrase=None))
    ok(invoke(home, "ask", "what words did I write down?", "--mode", "retrieval",
              passphrase=None))  # a chat database too
    plain_status = json.loads(ok(invoke(home, "status", "--json", passphrase=None)).stdout)

    ok(invoke(home, "encrypt", "-q"))
    assert vault.is_encrypted(home) and leaks(home, tokenizer) == []
    assert not list(home.rglob("*.vault-new")) and not (home / ".vault-convert.json").exists()
    status = json.loads(ok(invoke(home, "status", "--json")).stdout)
    assert status["documents"] == plain_status["documents"]
    assert status["stream_tokens"] == plain_status["stream_tokens"]
    assert "2024-03-04" in ok(invoke(home, "search", "walrus")).output
    exported = ok(invoke(home, "export", "--out", str(tmp_path / "export"), "--json"))
    assert "plaintext" in exported.output  # the warning
    conversations = json.loads((tmp_path / "export" / "conversations.json").read_text())
    assert conversations and "what words" in json.dumps(conversations)
    assert invoke(home, "export").exit_code == 1  # only where the person says
    assert invoke(home, "export", "--out", str(home / "inside")).exit_code == 1

    ok(invoke(home, "decrypt", "-q"))
    assert not vault.is_encrypted(home)
    assert {phrase for _, phrase in leaks(home, tokenizer)} == set(PHRASES)  # plain again
    status = json.loads(ok(invoke(home, "status", "--json", passphrase=None)).stdout)
    assert status["stream_tokens"] == plain_status["stream_tokens"]
    assert "2024-03-04" in ok(invoke(home, "search", "walrus", passphrase=None)).output


KILLER = """
import os, signal, sys
import vault.convert as convert
point, after = sys.argv[1], int(sys.argv[2])
calls = [0]
def killing(original):
    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapped
if point == "file":  # before the (after+1)-th file is converted
    convert._encrypt_file = killing(convert._encrypt_file)
elif point == "chunk":  # in the middle of writing a converted file
    convert.ChunkedFile.append = killing(convert.ChunkedFile.append)
elif point == "rename":  # the first rename is the commit; the next put files in place
    os.replace = killing(os.replace)
from assistant.cli import app
app(["--home", sys.argv[3], "encrypt", "-q"])
"""


@pytest.mark.parametrize("point,after,committed", [
    ("file", 0, False), ("file", 2, False), ("chunk", 1, False), ("rename", 0, False),
    ("rename", 1, True), ("rename", 3, True),
])
def test_a_sigkill_during_encrypt_leaves_a_home_that_opens(tmp_path, home, tokenizer, point,
                                                            after, committed):
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "config", "set", "embeddings", "false", passphrase=None))
    ok(invoke(home, "add", str(journal), passphrase=None))
    ok(invoke(home, "ask", "what words?", "--mode", "retrieval", passphrase=None))
    (home / "memory").mkdir(exist_ok=True)
    (home / "memory" / "rows.f16").write_bytes(os.urandom(300_000))  # several chunks
    before = json.loads(ok(invoke(home, "status", "--json", passphrase=None)).stdout)

    env = dict(os.environ, MEMEX_PASSPHRASE=PASSPHRASE, PYTHONPATH=str(REPO))
    killed = subprocess.run([sys.executable, "-c", KILLER, point, str(after), str(home)],
                            env=env, capture_output=True, cwd=tmp_path, timeout=300,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert vault.is_encrypted(home) == committed  # the commit is one rename

    # The next command finishes (or undoes) the conversion and works on the whole home.
    after_kill = json.loads(ok(invoke(home, "status", "--json")).stdout)
    assert after_kill["documents"] == before["documents"]
    assert after_kill["stream_tokens"] == before["stream_tokens"]
    assert not list(home.rglob("*.vault-new")) and not (home / ".vault-convert.json").exists()
    assert "2024-03-05" in ok(invoke(home, "search", "lantern")).output
    if committed:
        assert leaks(home, tokenizer) == []
    else:  # still plain: encrypting again goes through
        ok(invoke(home, "encrypt", "-q"))
        assert vault.is_encrypted(home) and leaks(home, tokenizer) == []
    history = ok(invoke(home, "export", "--out", str(tmp_path / "export"), "--json"))
    assert json.loads(history.stdout)["conversations"] == 1


def test_forget_on_an_encrypted_home_leaves_neither_text_nor_its_old_chunks(encrypted_home,
                                                                          tokenizer):
    import ingest

    home = encrypted_home
    stream = home / "stream.u32"
    old_records = stream.read_bytes()[HEADER.size:]
    ok(invoke(home, "forget", "--yes", str(Path(home).parent / "journal" / "daily" /
                                          "2024-03-03.md")))
    # The chunks that held the entry were encrypted again: their old ciphertext is gone.
    record = NONCE + vault.chunks.CHUNK_SIZE + vault.chunks.TAG
    new = stream.read_bytes()[HEADER.size:]
    changed = [i for i in range(0, len(old_records), record)
               if old_records[i:i + record] != new[i:i + record]]
    assert changed
    for i in changed:
        assert old_records[i:i + 64] not in new
    vault.remember(home, vault.unlock(home, PASSPHRASE))
    store = ingest.open_store(home)
    tokens = store.stream.read().astype("<u4").tobytes()
    ids = tokenizer.encode(f" {PHRASES[2]}", add_special_tokens=False)
    assert np.asarray(ids, dtype="<u4").tobytes() not in tokens
    from ingest.search import search

    assert search(store, "semaphore") == []
    before = store.status()
    store.close()
    assert leaks(home, tokenizer) == []
    # Compaction rewrites the stream through the vault, without the forgotten range.
    ok(invoke(home, "compact"))
    vault.remember(home, vault.unlock(home, PASSPHRASE))
    store = ingest.open_store(home)
    assert store.stream_tokens() == before["stream_tokens"] - before["dead_tokens"]
    assert vault.is_chunked(stream)
    ids = tokenizer.encode(f" {PHRASES[3]}", add_special_tokens=False)
    assert np.asarray(ids, dtype="<u4").tobytes() in store.stream.read().astype("<u4").tobytes()
    store.close()
    assert leaks(home, tokenizer) == []


def test_encrypt_waits_for_no_one_and_refuses_while_a_chat_is_open(encrypted_home,
                                                                     monkeypatch):
    """A chat (or a watch, an ask, a warm server) holds the home's lock shared while it
    runs: `memex decrypt` (and `encrypt`) will not rewrite the files under it."""
    from assistant.cli import encryption
    from assistant.cli.common import hold_home

    monkeypatch.setattr(encryption, "HOME_WAIT_S", 0.3)
    release = hold_home(encrypted_home)  # a chat, in this process
    try:
        refused = invoke(encrypted_home, "decrypt", "-q")
        assert refused.exit_code == 1 and "close it first" in refused.output
        assert vault.is_encrypted(encrypted_home)
    finally:
        release()
    ok(invoke(encrypted_home, "decrypt", "-q"))
    assert not vault.is_encrypted(encrypted_home)


def test_init_encrypt_refuses_a_home_with_notes(tmp_path, home):
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "config", "set", "embeddings", "false", passphrase=None))
    ok(invoke(home, "add", str(journal), passphrase=None))
    refused = invoke(home, "init", "--encrypt")
    assert refused.exit_code == 1 and "memex encrypt" in refused.output
    fresh = tmp_path / "fresh"
    created = ok(invoke(fresh, "init", "--encrypt", "--json"))
    assert json.loads(created.stdout) == {"home": str(fresh), "encrypted": True}
    assert vault.is_encrypted(fresh)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_passphrase_screen_unlocks_before_anything_loads(encrypted_home):
    from textual.widgets import Input, Static

    from assistant.tui.passphrase_screen import PassphraseApp

    vault.forget_key(encrypted_home)
    unlock = PassphraseApp(encrypted_home)
    async with unlock.run_test() as pilot:
        field = unlock.query_one(Input)
        assert field.password  # typed characters are not shown
        field.value = "not it"
        await pilot.press("enter")
        await unlock.workers.wait_for_complete()
        await pilot.pause()
        assert "wrong passphrase" in str(unlock.query_one("#error", Static).render())
        assert unlock.wrong == 1 and field.value == ""
        field.value = PASSPHRASE
        await pilot.press("enter")
        await unlock.workers.wait_for_complete()
        await pilot.pause()
    assert unlock.return_value == vault.unlock(encrypted_home, PASSPHRASE)


@pytest.mark.real_model
def test_no_planted_phrase_on_disk_after_add_build_ask_chat_and_train(tmp_path, home, tokenizer,
                                                                       no_network):
    """The issue's test: ten planted phrases, an encrypted home, the real default model."""
    import asyncio

    ok(invoke(home, "init", "--encrypt"))
    journal = planted_journal(tmp_path / "journal")
    ok(invoke(home, "add", str(journal)))  # with the real embeddings
    ok(invoke(home, "config", "set", "max_new_tokens", "16"))
    built = json.loads(ok(invoke(home, "memory", "build", "--json")).stdout)
    assert built["tokens"] == built["stream_tokens"] > 0
    answer = json.loads(ok(invoke(home, "ask", "Which words did I write down on 2024-03-06?",
                                  "--json")).stdout)
    assert answer["sources"] and answer["sources"][0]["date"] == "2024-03-06"
    memory = json.loads(ok(invoke(home, "ask", "What did we talk about by the river?",
                                  "--mode", "memory", "--json")).stdout)
    assert memory["answer"]
    reflection = json.loads(ok(invoke(home, "reflect", "--since", "2024-03-01", "--until",
                                      "2024-03-10", "--json")).stdout)
    assert reflection["entries"] == 10

    # A chat turn in the TUI, with the real engine.
    from test_tui import _ask

    from assistant.cli.common import open_engine
    from assistant.tui.app import MemexApp

    vault.remember(home, vault.unlock(home, PASSPHRASE))

    async def chat():
        engine = open_engine()
        tui = MemexApp(engine, watch=False)
        async with tui.run_test(size=(100, 30)) as pilot:
            await _ask(pilot, "What did I write on 2024-03-09?")
        return tui

    tui = asyncio.run(chat())
    assert len(tui.chats.messages(tui.chats.latest_conversation())) >= 2

    trained = json.loads(ok(invoke(home, "train", "--steps", "2", "--json")).stdout)
    assert trained["examples_seen"] == 2
    assert (home / "reader").is_dir() and any((home / "reader").iterdir())
    assert no_network == []
    assert leaks(home, tokenizer) == []
    # ...and with the key, the same files give everything back.
    status = json.loads(ok(invoke(home, "train", "--status", "--json")).stdout)
    assert status["reader"] == "trained"
    again = json.loads(ok(invoke(home, "memory", "status", "--json")).stdout)
    assert again["tokens"] == built["tokens"]
