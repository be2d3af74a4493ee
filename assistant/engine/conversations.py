"""Conversations, their messages and the sources of each answer, kept in ``<home>/chat.db``.

A separate SQLite file from the ingest store, with its own numbered migrations, so
the two never step on each other. An answer is written as soon as it starts
(status ``streaming``) and updated as it grows, so Ctrl-C or a crash leaves the
partial answer behind (status ``partial``), never nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

import vault

DB_NAME = "chat.db"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _migration_1(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {"id": int, "title": str, "created": str, "updated": str, "mode": str},
        pk="id",
    )
    db["messages"].create(
        {"id": int, "conversation_id": int, "role": str, "content": str, "status": str,
         "mode": str, "created": str, "timings": str, "note": str},
        pk="id", foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["messages"].create_index(["conversation_id", "id"])
    db["sources"].create(
        {"id": int, "message_id": int, "rank": int, "path": str, "root": str, "date": str,
         "snippet": str, "text": str, "document_id": int, "chunk_id": int, "score": float},
        pk="id", foreign_keys=[("message_id", "messages", "id")],
    )
    db["sources"].create_index(["message_id", "rank"])


MIGRATIONS = [_migration_1]


@dataclass
class SourceRecord:
    path: str
    date: str | None
    snippet: str
    root: str = ""
    text: str = ""
    document_id: int | None = None
    chunk_id: int | None = None
    score: float = 0.0

    def public(self) -> dict:
        """The keys promised by ``--json``: path, date, snippet."""
        return {"path": self.path, "date": self.date, "snippet": self.snippet}


@dataclass
class MessageRecord:
    id: int
    conversation_id: int
    role: str
    content: str
    status: str
    mode: str | None
    created: str
    timings: dict = field(default_factory=dict)
    note: str | None = None
    sources: list[SourceRecord] = field(default_factory=list)


@dataclass
class ConversationRecord:
    id: int
    title: str
    created: str
    updated: str
    mode: str | None


class ConversationStore:
    """Read and write conversations. One instance per thread (SQLite connections are not shared)."""

    def __init__(self, home: Path | str):
        self.path = Path(home) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not self.path.exists()
        conn = vault.connect(self.path, check_same_thread=False, timeout=30)
        if fresh:
            self.path.chmod(0o600)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self.db.conn.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path} was written by a newer memex (schema {version})")
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.db.conn:
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")

    # -- conversations ---------------------------------------------------------------

    def new_conversation(self, title: str = "", mode: str | None = None) -> int:
        now = _now()
        with self.db.conn:
            table = self.db["conversations"].insert(
                {"title": title, "created": now, "updated": now, "mode": mode})
        return table.last_pk

    def conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        sql = "select * from conversations order by updated desc, id desc"
        if limit:
            sql += f" limit {int(limit)}"
        return [ConversationRecord(**row) for row in self.db.query(sql)]

    def latest_conversation(self) -> int | None:
        rows = self.conversations(limit=1)
        return rows[0].id if rows else None

    def set_title(self, conversation_id: int, title: str) -> None:
        with self.db.conn:
            self.db["conversations"].update(conversation_id, {"title": title})

    # -- messages --------------------------------------------------------------------

    def add_message(self, conversation_id: int, role: str, content: str, status: str = "complete",
                    mode: str | None = None) -> int:
        now = _now()
        with self.db.conn:
            table = self.db["messages"].insert(
                {"conversation_id": conversation_id, "role": role, "content": content,
                 "status": status, "mode": mode, "created": now, "timings": "{}", "note": None})
            self.db["conversations"].update(conversation_id, {"updated": now})
            conv = self.db["conversations"].get(conversation_id)
            if role == "user" and not conv["title"]:
                self.db["conversations"].update(conversation_id, {"title": _title(content)})
        return table.last_pk

    def update_message(self, message_id: int, content: str | None = None, status: str | None = None,
                       timings: dict | None = None, note: str | None = None) -> None:
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if status is not None:
            changes["status"] = status
        if timings is not None:
            changes["timings"] = json.dumps(timings)
        if note is not None:
            changes["note"] = note
        if changes:
            with self.db.conn:
                self.db["messages"].update(message_id, changes)

    def add_sources(self, message_id: int, sources: Iterable[SourceRecord]) -> None:
        rows = [{"message_id": message_id, "rank": rank, "path": s.path, "root": s.root,
                 "date": s.date, "snippet": s.snippet, "text": s.text,
                 "document_id": s.document_id, "chunk_id": s.chunk_id, "score": s.score}
                for rank, s in enumerate(sources)]
        if rows:
            with self.db.conn:
                self.db["sources"].insert_all(rows)

    def sources(self, message_id: int) -> list[SourceRecord]:
        rows = self.db.query("select * from sources where message_id = ? order by rank", [message_id])
        return [SourceRecord(path=r["path"], date=r["date"], snippet=r["snippet"], root=r["root"] or "",
                             text=r["text"] or "", document_id=r["document_id"],
                             chunk_id=r["chunk_id"], score=r["score"] or 0.0) for r in rows]

    def messages(self, conversation_id: int, with_sources: bool = True) -> list[MessageRecord]:
        rows = self.db.query("select * from messages where conversation_id = ? order by id",
                             [conversation_id])
        out = []
        for r in rows:
            message = MessageRecord(
                id=r["id"], conversation_id=r["conversation_id"], role=r["role"],
                content=r["content"], status=r["status"], mode=r["mode"], created=r["created"],
                timings=json.loads(r["timings"] or "{}"), note=r["note"])
            if with_sources and r["role"] == "assistant":
                message.sources = self.sources(r["id"])
            out.append(message)
        return out

    def mark_interrupted(self) -> int:
        """Answers left ``streaming`` by a crash become ``partial``. Returns how many."""
        with self.db.conn:
            cursor = self.db.execute(
                "update messages set status = 'partial' where status = 'streaming'")
        return cursor.rowcount

    def delete_conversation(self, conversation_id: int) -> None:
        with self.db.conn:
            self.db.execute("delete from sources where message_id in "
                            "(select id from messages where conversation_id = ?)", [conversation_id])
            self.db.execute("delete from messages where conversation_id = ?", [conversation_id])
            self.db.execute("delete from conversations where id = ?", [conversation_id])

    def export(self) -> list[dict]:
        """Every conversation with its messages and sources, oldest first, as plain dicts."""
        out = []
        for conv in sorted(self.conversations(), key=lambda c: c.id):
            out.append({
                "id": conv.id, "title": conv.title, "created": conv.created, "updated": conv.updated,
                "messages": [
                    {"role": m.role, "content": m.content, "status": m.status, "mode": m.mode,
                     "created": m.created, "timings": m.timings,
                     "sources": [s.public() for s in m.sources]}
                    for m in self.messages(conv.id)
                ],
            })
        return out


def _title(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"
