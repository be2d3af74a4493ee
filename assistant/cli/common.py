"""What every `memex` command shares: the one-line error, opening the engine on the data
home, checking an answer mode, and refusing politely when nothing was added yet."""

from __future__ import annotations

import os
import sys
from datetime import date
from typing import NoReturn

import typer

from assistant.config import MODES, ConfigError, load_config
from assistant.home import get_home

MODE_HELP = f"Answer mode: {', '.join(MODES)} (default: the configured mode, hybrid)."


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


PASSPHRASE_ENV = "MEMEX_PASSPHRASE"
WRONG_PASSPHRASE = 2  # the exit code of a passphrase that does not open the data home


def read_passphrase(prompt: str = "Passphrase", confirm: bool = False,
                    env: str = PASSPHRASE_ENV) -> str:
    """The passphrase from ``env`` (scripts, tests) or a hidden prompt on a terminal."""
    given = os.environ.get(env)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        fail(f"this needs the data home's passphrase: set {env} or run it in a terminal",
             code=WRONG_PASSPHRASE)
    import getpass

    while True:
        first = getpass.getpass(f"{prompt}: ")
        if not confirm:
            return first
        if not first:
            typer.secho("an empty passphrase protects nothing; try again", err=True)
        elif getpass.getpass("Again, to be sure: ") == first:
            return first
        else:
            typer.secho("the two did not match; try again", err=True)


HOME_LOCK = "home.lock"  # shared by every running command; `memex encrypt` takes it alone


def hold_home(home, exclusive: bool = False, wait_s: float | None = None):
    """Hold the data home's lock (shared, or ``exclusive``) and return what releases it.
    A shared hold waits for a conversion to end; an exclusive one waits ``wait_s`` at most
    (None: as long as it takes) and then fails with a clear error."""
    import fcntl
    import time

    fd = os.open(home / HOME_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = None if wait_s is None else time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                os.close(fd)
                fail("another memex command is using this data home (a chat, a watch, an "
                     "ask, a build): close it first")
            if not told and not exclusive:
                typer.secho("waiting for `memex encrypt`/`decrypt` to finish…", err=True)
                told = True
            time.sleep(0.1)

    def release() -> None:
        os.close(fd)  # closing releases the lock

    return release


def unlock_home(home=None) -> None:
    """Unlock an encrypted data home for this process (a no-op on a plain one or one
    unlocked already): its passphrase from MEMEX_PASSPHRASE or the prompt. A wrong one
    ends the command with exit code 2, nothing read or changed."""
    import vault

    home = home or get_home()  # (the command's start finished or undid a conversion)
    if not vault.is_encrypted(home) or vault.is_unlocked(home):
        return
    passphrase = read_passphrase()
    try:
        key = vault.unlock(home, passphrase)
    except vault.WrongPassphrase:
        fail(f"wrong passphrase for {home}: nothing was read or changed",
             code=WRONG_PASSPHRASE)
    except vault.VaultError as exc:
        fail(str(exc), code=WRONG_PASSPHRASE)
    vault.remember(home, key)


def open_engine(today: str | None = None):
    """The engine on the current data home (``--today`` an ISO date, if given)."""
    from assistant.engine import Engine

    unlock_home()
    try:
        config = load_config(get_home())
    except ConfigError as exc:
        fail(str(exc))
    return Engine(get_home(), config, today=check_today(today))


def check_today(today: str | None) -> date | None:
    """``--today`` as a date (None when not given); a clear error when it is not ISO."""
    if not today:
        return None
    try:
        return date.fromisoformat(today)
    except ValueError:
        fail(f"--today must be an ISO date (YYYY-MM-DD), not {today!r}")


def check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        fail(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def require_notes(engine) -> None:
    """A clear message instead of an empty answer when nothing has been added yet."""
    try:
        count = engine.entry_count()
    except Exception as exc:  # the store could not be opened at all
        fail(f"cannot open the notes store in {engine.home}: {exc}")
    if count == 0:
        fail("no notes yet: add a folder first with `memex add PATH`")
