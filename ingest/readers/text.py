"""Plain text: decoded bytes; a date alone on a line can start an entry."""

from __future__ import annotations

from ingest.readers.base import ReadResult, decode_text

FORMAT = "text"
EXTENSIONS = (".txt", ".text")


def read(data: bytes, relpath: str) -> ReadResult:
    text, encoding = decode_text(data)
    return ReadResult(text=text, encoding=encoding, heading_style="text")
