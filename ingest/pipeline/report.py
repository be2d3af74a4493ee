"""What one ingest run did: ``IngestReport``, filled in by every phase and returned by
``run`` (``as_dict`` is what ``memex ingest --json`` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestReport:
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    touched: int = 0
    moved: int = 0
    revived: int = 0
    deleted: int = 0
    skipped: list[dict] = field(default_factory=list)
    missing_sources: list[str] = field(default_factory=list)
    bytes_read: int = 0
    entries_streamed: int = 0
    tokens_appended: int = 0
    chunks_embedded: int = 0
    embed_error: str | None = None
    seconds: dict = field(default_factory=dict)
    stopped: bool = False

    @property
    def changed_anything(self) -> bool:
        return bool(self.new or self.changed or self.moved or self.revived or self.deleted
                    or self.tokens_appended or self.touched or self.skipped)

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["skipped"] = list(self.skipped)
        return data
