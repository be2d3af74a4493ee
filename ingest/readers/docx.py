"""DOCX: paragraphs and tables (python-docx); headings become Markdown headings."""

from __future__ import annotations

import io
import zipfile

from ingest.readers.base import ReadResult, SkipFile

FORMAT = "docx"
EXTENSIONS = (".docx",)

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # encrypted Office files and old .doc


def read(data: bytes, relpath: str) -> ReadResult:
    import docx

    if data.startswith(_OLE_MAGIC):
        raise SkipFile("encrypted or legacy Word file (not a plain DOCX)")
    if not data.startswith(b"PK"):
        raise SkipFile("not a DOCX file (not a zip archive)")
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for paragraph in document.paragraphs:
            text = paragraph.text.strip()
            if not text:
                continue
            style = (paragraph.style.name or "") if paragraph.style is not None else ""
            if style.lower().startswith("heading"):
                level = "".join(ch for ch in style if ch.isdigit()) or "1"
                text = "#" * min(int(level), 6) + " " + text
            elif style.lower() == "title":
                text = "# " + text
            lines.append(text)
        for table in document.tables:
            for row in table.rows:
                cells = [cell.text.strip() for cell in row.cells if cell.text.strip()]
                if cells:
                    lines.append(" | ".join(cells))
        props = document.core_properties
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise SkipFile(f"unreadable DOCX ({type(exc).__name__}: {str(exc)[:120]})") from None
    except Exception as exc:  # lxml and python-docx raise their own types too
        raise SkipFile(f"unreadable DOCX ({type(exc).__name__}: {str(exc)[:120]})") from None
    text = "\n\n".join(lines)
    if not text.strip():
        raise SkipFile("DOCX has no text")
    result = ReadResult(text=text, heading_style="markdown")
    try:
        result.title = (props.title or "").strip()[:300] or None
        if props.created is not None:
            result.fallback_date = props.created.date()
    except Exception:
        result.warnings.append("unreadable DOCX properties ignored")
    return result
