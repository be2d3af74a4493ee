"""PDF: the text layer (pypdf). Encrypted, fake or image-only PDFs are skipped."""

from __future__ import annotations

import io
import logging

from ingest.readers.base import ReadResult, SkipFile

FORMAT = "pdf"
EXTENSIONS = (".pdf",)

logging.getLogger("pypdf").setLevel(logging.ERROR)


def read(data: bytes, relpath: str) -> ReadResult:
    from pypdf import PdfReader

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise SkipFile("not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise SkipFile("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except SkipFile:
        raise
    except Exception as exc:  # pypdf raises many error types on damaged files
        raise SkipFile(f"unreadable PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text.strip():
        raise SkipFile("PDF has no text layer (scanned images?)")
    result = ReadResult(text=text, heading_style="text")
    try:
        info = reader.metadata
        if info is not None:
            if info.title:
                result.title = str(info.title)[:300]
            created = info.creation_date
            if created is not None:
                result.fallback_date = created.date()
    except Exception:
        result.warnings.append("unreadable PDF metadata ignored")
    return result
