"""Helpers shared by the ingest tests (no tests here): real files of every format on disk."""

from __future__ import annotations

import io
import time
from pathlib import Path


def make_pdf(text_lines: list[str]) -> bytes:
    """A small, valid PDF with a real text layer (Helvetica, one page)."""
    def escape(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(
        f"({escape(line)}) Tj T*" for line in text_lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
              .encode())
    return out.getvalue()


def make_encrypted_pdf(text_lines: list[str], password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(text_lines))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(paragraphs: list[tuple[str, str | None]]) -> bytes:
    """paragraphs: (text, style) pairs, style like 'Heading 2' or None."""
    import docx

    document = docx.Document()
    for text, style in paragraphs:
        document.add_paragraph(text, style=style) if style else document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def write(path: Path, content: str | bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    if mtime is not None:
        import os

        os.utime(path, (mtime, mtime))
    return path


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def journal_tree(root: Path) -> Path:
    """A small journal: dated notes, a multi-entry file, front matter, other formats."""
    write(root / "2024-03-05.md", "Went to Lisbon with Anna. We ate pastéis de nata by the river.\n\n"
          "The tram up to the castle was full of tourists.\n")
    write(root / "2024-03-06.md", "---\ntitle: Quiet day\ntags: [home, rest]\n---\n"
          "Stayed home. Read about [[Octavia Butler|Butler]] and [[Parable of the Sower]].\n")
    write(root / "notes" / "work.md", "---\ndate: 2024-02-10\n---\nQuarterly review with Marta; "
          "the migration project slipped by two weeks.\n")
    write(root / "long-journal.md", "# Journal 2023\n\n## 2023-12-30\nSnow in the mountains. "
          "Skiing with Tomás.\n\n## 2023-12-31\nNew year's eve dinner, fireworks at midnight.\n")
    write(root / "2024" / "01" / "15.txt", "Dentist appointment. Teeth fine.\n")
    write(root / "garden.org", "#+TITLE: Garden\n#+DATE: <2024-04-01 Mon>\n\n* Tomatoes\n"
          "Planted six tomato seedlings.\n")
    write(root / "page.html", "<html><head><title>Recipe</title><script>var x=1;</script></head>"
          "<body><h1>Soup</h1><p>Leek and potato soup for the cold evening.</p></body></html>",
          mtime=time.mktime((2024, 2, 1, 12, 0, 0, 0, 0, -1)))  # dated by its mtime
    return root


def check_consistency(store, tokenizer=None) -> None:
    """Assert the store and the stream agree; decode live entries when given a tokenizer."""
    db = store.db
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    spans = db.execute("SELECT token_start, token_end, entry_id, status FROM spans "
                       "ORDER BY token_start").fetchall()
    position = 0
    for start, end, _, _ in spans:  # spans tile the stream exactly
        assert start == position and end > start
        position = end
    assert position == store.stream_tokens() == len(store.stream)
    if store.stream.exists:
        assert store.stream.file_tokens() == position
    # One current revision per document, and no live entries outside it.
    doubled = db.execute("SELECT document_id FROM revisions WHERE status = 'current' "
                         "GROUP BY document_id HAVING count(*) > 1").fetchall()
    assert doubled == []
    stray = db.execute("SELECT count(*) FROM entries e JOIN revisions r ON r.id = e.revision_id "
                       "WHERE e.status IN ('live', 'pending') AND r.status != 'current'"
                       ).fetchone()[0]
    assert stray == 0
    mismatched = db.execute(
        "SELECT count(*) FROM entries e JOIN spans s ON s.entry_id = e.id "
        "WHERE e.status != s.status AND s.status != 'forgotten'").fetchone()[0]
    assert mismatched == 0
    if tokenizer is None:
        return
    for entry_id, start, end in db.execute(
            "SELECT entry_id, token_start, token_end FROM spans WHERE status = 'live'"):
        header = db.execute("SELECT header FROM entries WHERE id = ?", [entry_id]).fetchone()[0]
        chunks = db.execute("SELECT text, token_start, token_end FROM chunks WHERE entry_id = ? "
                            "ORDER BY ordinal", [entry_id]).fetchall()
        ids = store.stream.read(start, end).tolist()
        text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        assert text == header + "".join(c[0] for c in chunks)
        # Chunks tile the entry's tokens; the header's tokens belong to the first chunk.
        assert chunks[0][1] == start and chunks[-1][2] == end
        assert all(a[2] == b[1] for a, b in zip(chunks, chunks[1:]))


def live_documents(store) -> dict[str, str]:
    """{relative path: sha256} of live documents."""
    return dict(store.db.execute("SELECT path, sha256 FROM documents WHERE status = 'live'"))


def disk_documents(root: Path) -> dict[str, str]:
    import hashlib

    from ingest.pipeline.scan import is_ignored_name
    from ingest.readers import reader_for

    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(is_ignored_name(part) for part in rel.parts) or path.is_symlink():
            continue
        if path.is_file() and reader_for(path.name) and path.stat().st_size:
            found[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
