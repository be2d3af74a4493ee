"""`memex export`: conversations and the index of the notes as Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from assistant.cli.common import fail


def export(
    out: Path | None = typer.Option(None, "--out", "-o", show_default=False,
                                    help="Folder to write into (default: ./memex-export; "
                                         "an encrypted home asks for it)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write conversations and the index of your notes as Markdown and JSON."""
    import vault
    from assistant.engine.conversations import ConversationStore
    from assistant.home import get_home

    home = get_home()
    if vault.is_encrypted(home):
        # An export is plaintext: only where the person names it, and never in the home.
        if out is None:
            fail("this data home is encrypted and an export is plaintext: say where it goes "
                 "with --out")
        inside = out.resolve()
        if inside == home.resolve() or home.resolve() in inside.parents:
            fail("an export is plaintext: write it outside the encrypted data home")
        typer.secho(f"warning: writing plaintext to {out}/ (the data home stays encrypted)",
                    fg="yellow", err=True)
    out = out or Path("memex-export")
    out.mkdir(parents=True, exist_ok=True)
    conversations = ConversationStore(home).export()
    written = []
    written.append(_write(out / "conversations.json", json.dumps(conversations, indent=2, ensure_ascii=False)))
    written.append(_write(out / "conversations.md", conversations_markdown(conversations)))
    index = _index_rows(home)
    written.append(_write(out / "index.json", json.dumps(index, indent=2, ensure_ascii=False)))
    written.append(_write(out / "index.md", index_markdown(index)))
    summary = {"folder": str(out.resolve()), "files": [str(p) for p in written],
               "conversations": len(conversations), "documents": len(index)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(f"wrote {len(conversations)} conversations and an index of {len(index)} "
                   f"documents to {out}/")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # an export holds private text
    return path


def _index_rows(home: Path) -> list[dict]:
    """Documents of the ingest store (path, root, date, format, status); empty without one."""
    try:
        import ingest

        store = ingest.open_store(home)
    except Exception:
        return []
    db = store.db
    columns = {c.name for c in db["documents"].columns} if "documents" in db.table_names() else set()
    if not columns:
        return []
    wanted = [c for c in ("path", "root", "entry_date", "format", "status", "size", "error",
                          "date_rule", "title") if c in columns]
    rows = [dict(r) for r in db.query(f"select {', '.join(wanted)} from documents order by "
                                      f"{'entry_date, ' if 'entry_date' in columns else ''}path")]
    if hasattr(store, "close"):
        store.close()
    return rows


def conversations_markdown(conversations: list[dict]) -> str:
    lines = ["# memex conversations", ""]
    for conv in conversations:
        lines += [f"## {conv['title'] or 'Untitled'}", "", f"_{conv['created']}_", ""]
        for m in conv["messages"]:
            who = "**You**" if m["role"] == "user" else "**memex**"
            status = "" if m["status"] in ("complete", None) else f" _({m['status']})_"
            lines += [f"{who}{status}: {m['content']}", ""]
            for s in m.get("sources", []):
                lines.append(f"- `{s['path']}` ({s['date'] or 'undated'}): {s['snippet']}")
            if m.get("sources"):
                lines.append("")
    return "\n".join(lines)


def index_markdown(rows: list[dict]) -> str:
    lines = ["# memex index", "", "| date | path | format | status |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('entry_date') or ''} | {r.get('path')} | {r.get('format') or ''} "
                     f"| {r.get('status') or ''} |")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    app.command("export")(export)
