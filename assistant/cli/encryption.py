"""Encryption at rest from the command line: `memex init --encrypt` for a new data home,
`memex encrypt` / `memex decrypt` to convert one in place, `memex passphrase change`.

The passphrase comes from MEMEX_PASSPHRASE (scripts, tests) or a hidden prompt; a new one
from MEMEX_NEW_PASSPHRASE or the prompt, asked twice. It is never written anywhere. A
wrong one ends the command with exit code 2 and changes nothing."""

from __future__ import annotations

import contextlib
import json
import os

import typer

from assistant.cli.common import WRONG_PASSPHRASE, fail, read_passphrase
from assistant.home import get_home

NEW_PASSPHRASE_ENV = "MEMEX_NEW_PASSPHRASE"
HOME_WAIT_S = 10.0  # for the others to let go of the home (a stopped server exits first)
LOST_PASSPHRASE = ("Keep the passphrase safe: without it nobody, memex included, can read "
                   "this data home again.")

passphrase_app = typer.Typer(help="The passphrase of an encrypted data home.",
                             no_args_is_help=True)


def _holds_data(home) -> bool:
    names = {"memex.db", "chat.db", "stream.u32", "memory", "reader"}
    return any((home / name).exists() for name in names)


def _new_passphrase(env: str, prompt: str) -> str:
    passphrase = read_passphrase(prompt, confirm=True, env=env)
    if not passphrase:
        fail("an empty passphrase protects nothing")
    return passphrase


@contextlib.contextmanager
def _home_to_myself(home):
    """No other memex working on ``home`` while its files are rewritten: its warm server
    stopped, the home's lock held alone (no chat, watch, ask or server runs meanwhile, and
    one started now waits), and the ingest and memory locks held."""
    import fcntl

    from assistant.cli.common import hold_home
    from assistant.engine.memory import MEMORY_LOCK
    from assistant.server.client import stop_server
    from ingest.store import LOCK_NAME

    stop_server(home)
    held = []
    release = hold_home(home, exclusive=True, wait_s=HOME_WAIT_S)
    try:
        for name in (LOCK_NAME, MEMORY_LOCK):
            fd = os.open(home / name, os.O_CREAT | os.O_RDWR, 0o600)
            held.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fail("another memex command is working on this data home (an ingest, a "
                     "memory build, a chat's background build); let it finish first")
        yield
    finally:
        for fd in held:
            os.close(fd)
        release()


def _progress(quiet: bool):
    if quiet:
        return None
    return lambda name: typer.secho(f"  {name}", dim=True, err=True)


def init_command(
    encrypt: bool = typer.Option(False, "--encrypt",
                                 help="Encrypt everything this data home will hold."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create the data home (with --encrypt: an encrypted one, asking for its passphrase)."""
    import vault

    home = get_home()
    if encrypt:
        if vault.is_encrypted(home):
            fail(f"{home} is encrypted already")
        if _holds_data(home):
            fail(f"{home} already holds notes: encrypt it in place with `memex encrypt`")
        passphrase = _new_passphrase("MEMEX_PASSPHRASE", "New passphrase")
        vault.create(home, passphrase)
    if as_json:
        typer.echo(json.dumps({"home": str(home), "encrypted": vault.is_encrypted(home)}))
        return
    if encrypt:
        typer.echo(f"created an encrypted data home at {home}")
        typer.secho(LOST_PASSPHRASE, fg="yellow")
    else:
        state = "encrypted" if vault.is_encrypted(home) else "not encrypted"
        typer.echo(f"data home ready at {home} ({state})")


def encrypt_command(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not list the files."),
) -> None:
    """Encrypt an existing data home in place (SQLCipher 4 for the databases, AES-256-GCM
    for everything else). A crash at any moment leaves it plain or encrypted, never lost."""
    import vault
    from vault.convert import encrypt_home, recover

    home = get_home()
    recover(home)
    if vault.is_encrypted(home):
        fail(f"{home} is encrypted already")
    passphrase = _new_passphrase("MEMEX_PASSPHRASE", "New passphrase")
    key, header = vault.keys.new_header(passphrase)
    with _home_to_myself(home):
        count = encrypt_home(home, key, vault.keys.header_bytes(header), _progress(quiet))
    typer.echo(f"encrypted {count} files in {home}")
    typer.secho(LOST_PASSPHRASE, fg="yellow")
    typer.secho("The old plaintext files were deleted, not overwritten: their blocks stay on "
                "the disk until reused. For a stolen-laptop guarantee, keep the disk itself "
                "encrypted too (or start from `memex init --encrypt`).", dim=True)


def decrypt_command(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not list the files."),
) -> None:
    """Turn an encrypted data home back into plain files (asks for its passphrase)."""
    import vault
    from assistant.cli.common import unlock_home
    from vault.convert import decrypt_home, recover

    home = get_home()
    recover(home)
    if not vault.is_encrypted(home):
        fail(f"{home} is not encrypted")
    unlock_home(home)
    key = vault.key_for(home / "memex.db")
    with _home_to_myself(home):
        count = decrypt_home(home, key, _progress(quiet))
    vault.forget_key(home)
    typer.secho(f"decrypted {count} files in {home}: anyone with the disk can read it now",
                fg="yellow")


@passphrase_app.command("change")
def change_command() -> None:
    """Re-wrap the data key under a new passphrase; no data is rewritten."""
    import vault

    home = get_home()
    if not vault.is_encrypted(home):
        fail(f"{home} is not encrypted: `memex encrypt` first")
    old = read_passphrase("Current passphrase")
    try:
        vault.unlock(home, old)
    except vault.WrongPassphrase:
        fail(f"wrong passphrase for {home}: nothing was read or changed", code=WRONG_PASSPHRASE)
    new = _new_passphrase(NEW_PASSPHRASE_ENV, "New passphrase")
    from assistant.server.client import stop_server

    stop_server(home)  # it answered to the old passphrase
    vault.change_passphrase(home, old, new)
    typer.echo("the passphrase is changed; the old one opens nothing now")


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.command("encrypt")(encrypt_command)
    app.command("decrypt")(decrypt_command)
    app.add_typer(passphrase_app, name="passphrase")
