"""`memex serve`: the warm server that `memex ask` and `memex reflect` start on demand (run
it by hand to see it, stop it with `--stop`, ask about it with `--status`)."""

from __future__ import annotations

import json
import os

import typer

from assistant.cli.common import fail
from assistant.home import get_home


def serve_command(
    stop: bool = typer.Option(False, "--stop", help="Stop this data home's warm server."),
    status: bool = typer.Option(False, "--status", help="Say whether one is running."),
    as_json: bool = typer.Option(False, "--json", help="With --status or --stop: JSON."),
    idle: int | None = typer.Option(None, "--idle", min=1,
                                    help="Minutes without a question before it exits "
                                         "(default: the server_idle_minutes setting, 15)."),
    log: bool = typer.Option(False, "--log", help="Print the server's log (serve.log; "
                                                "decrypted on an encrypted home)."),
    key_fd: int | None = typer.Option(None, "--key-fd", hidden=True,
                                      help="A pipe holding an encrypted home's data key."),
) -> None:
    """Keep the model, the embedder and the memory loaded for the next questions.

    `memex ask` and `memex reflect` start it in the background when it is not running and
    replace one of another memex version or other settings. It listens on a socket in the
    data home that only you can open, and exits after the idle time."""
    from assistant.server.client import hello, stop_server
    from assistant.server.protocol import identity, socket_usable

    home = get_home()
    if stop and status:
        fail("use --stop or --status, not both")
    if log:
        _print_log(home)
        return
    if stop:
        pid = stop_server(home)
        if as_json:
            typer.echo(json.dumps({"stopped": pid is not None, "pid": pid}))
        else:
            typer.echo(f"stopped the warm server (pid {pid})" if pid else
                       "no warm server is running for this data home")
        return
    if status:
        found = hello(home)
        info = {"running": found is not None, "pid": found and found.get("pid"),
                "ready": bool(found and found.get("ready")),
                "trusted": bool(found and found.get("identity") == identity(home))}
        if as_json:
            typer.echo(json.dumps(info))
        elif not found:
            typer.echo("no warm server is running for this data home")
        else:
            state = "ready" if info["ready"] else "loading the model"
            trust = "" if info["trusted"] else " (another version or settings: will be replaced)"
            typer.echo(f"warm server running (pid {info['pid']}), {state}{trust}")
        return
    if not socket_usable(home):
        fail(f"the data home's path is too long for a Unix socket: {home}")
    _take_key(home, key_fd)
    from assistant.config import ConfigError, load_config
    from assistant.server.server import serve

    try:
        minutes = idle or load_config(home).server_idle_minutes
    except ConfigError as exc:
        fail(str(exc))
    code = serve(home, idle_s=60.0 * minutes)
    if code == 3:
        fail("a warm server is already running for this data home", code=3)


def _print_log(home) -> None:
    import sys

    import vault
    from assistant.cli.common import unlock_home
    from assistant.server.protocol import LOG_NAME

    path = home / LOG_NAME
    if not path.is_file():
        typer.echo("no serve.log in this data home yet")
        return
    unlock_home(home)
    sys.stdout.write(vault.files_for(path).read_bytes(path).decode("utf-8", "replace"))


def _take_key(home, key_fd: int | None) -> None:
    """An encrypted home's key: from the pipe its client handed over, else the passphrase
    (a server run by hand). Its output then goes to an encrypted serve.log."""
    import vault
    from assistant.cli.common import unlock_home

    if key_fd is not None:
        with os.fdopen(key_fd, "rb") as pipe:
            key = pipe.read(64)
        if vault.is_encrypted(home):
            vault.remember(home, key)
    else:
        unlock_home(home)
    if vault.is_encrypted(home) and key_fd is not None:
        from assistant.server.server import log_encrypted

        log_encrypted(home)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
