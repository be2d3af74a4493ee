"""Readers, dates and chunking: each format, each date rule, each kind of bad input."""

from __future__ import annotations

import codecs
import json
import time
from datetime import date

import pytest
from test_ingest_helpers import make_docx, make_encrypted_pdf, make_pdf

from ingest.chunking import chunk_spans
from ingest.dates import assign_entries, date_from_heading, date_from_path, date_headings
from ingest.readers import reader_for
from ingest.readers.base import SkipFile, decode_text

MTIME = time.mktime((2021, 6, 1, 12, 0, 0, 0, 0, -1)) * 1e9


def entries_of(name: str, data: bytes):
    result = reader_for(name).read(data, name)
    return assign_entries(result, name, int(MTIME))


# -- dates -------------------------------------------------------------------
@pytest.mark.parametrize("path, expected", [
    ("2024-03-05.md", date(2024, 3, 5)),
    ("journal/2024_03_05 evening.txt", date(2024, 3, 5)),
    ("20240305.md", date(2024, 3, 5)),
    ("2024/03/05.md", date(2024, 3, 5)),
    ("daily/2024-03/05.md", date(2024, 3, 5)),
    ("notes/meeting.md", None),
    ("2024-02-30.md", None),         # not a day
    ("v12345678.md", None),           # digits that are not a date
    ("1850-01-01.md", date(1850, 1, 1)),  # any year 0001-9999 (issue 24)
])
def test_date_from_path(path, expected):
    assert date_from_path(path) == expected


@pytest.mark.parametrize("heading, expected", [
    ("2024-03-05", date(2024, 3, 5)),
    ("<2024-03-05 Tue>", date(2024, 3, 5)),
    ("Tuesday, March 5, 2024", date(2024, 3, 5)),
    ("5 March 2024", date(2024, 3, 5)),
    ("Meeting notes", None),
    ("March 2024", None),             # a month is not an entry's day
    ("Chapter 12", None),
])
def test_date_from_heading(heading, expected):
    assert date_from_heading(heading) == expected


def test_rule_order_front_matter_then_name_then_headings_then_mtime():
    fm = entries_of("2024-01-01.md", b"---\ndate: 2023-05-06\n---\n## 2022-01-01\nbody\n")
    assert [(e.date, e.date_rule) for e in fm] == [(date(2023, 5, 6), "front_matter")]
    named = entries_of("2024-01-01.md", b"## 2022-01-01\nbody\n")
    assert [(e.date, e.date_rule) for e in named] == [(date(2024, 1, 1), "file_name")]
    undated = entries_of("thoughts.md", b"Just some thoughts.\n")
    assert undated[0].date_rule == "mtime" and undated[0].date == date(2021, 6, 1)


def test_date_headings_split_a_long_journal_into_entries():
    text = ("# Journal\n\nintro line\n\n## 2023-12-30\nSnow.\n\n## Sunday, December 31, 2023\n"
            "Fireworks.\n\n### Later\nstill the 31st\n")
    entries = entries_of("journal.md", text.encode())
    assert [(e.date, e.date_rule) for e in entries] == [
        (date(2023, 12, 30), "heading"), (date(2023, 12, 31), "heading")]
    assert entries[0].text.startswith("# Journal")           # the preamble is kept
    assert "still the 31st" in entries[1].text
    assert "".join(e.text for e in entries) == text          # nothing lost between entries


def test_plain_text_date_lines_and_org_headings():
    txt = entries_of("diary.txt", b"2024-01-01\nfirst\n\n2024-01-02\nsecond\n")
    assert [e.date for e in txt] == [date(2024, 1, 1), date(2024, 1, 2)]
    org = entries_of("diary.org", b"* <2024-02-01 Thu>\nfeb one\n* <2024-02-02 Fri>\nfeb two\n")
    assert [e.date for e in org] == [date(2024, 2, 1), date(2024, 2, 2)]
    assert date_headings("## not a date\ntext", "markdown") == []


# -- formats -----------------------------------------------------------------
def test_markdown_front_matter_tags_title_and_wikilinks():
    data = (b"---\ntitle: Quiet day\ntags: [home, rest]\ndate: 2024-03-06\n---\n"
            b"Read [[Octavia Butler|Butler]], [[Parable of the Sower]] and ![[cover.png]].\n")
    result = reader_for("x.md").read(data, "x.md")
    assert result.title == "Quiet day" and result.tags == ["home", "rest"]
    assert result.date == date(2024, 3, 6) and result.date_rule == "front_matter"
    assert "Read Butler, Parable of the Sower and cover.png." in result.text
    assert "[[" not in result.text and "title:" not in result.text


def test_broken_front_matter_keeps_the_body():
    data = b"---\ntitle: [unclosed\n---\nThe body survives.\n"
    result = reader_for("x.md").read(data, "x.md")
    assert result.text.strip() == "The body survives."
    assert any("broken front matter" in w for w in result.warnings)


def test_org_html_pdf_docx_dayone():
    org = reader_for("g.org").read(b"#+TITLE: Garden\n#+DATE: 2024-04-01\n#+FILETAGS: :home:\n\n"
                                   b"* Tomatoes\nPlanted six.\n", "g.org")
    assert org.date == date(2024, 4, 1) and org.tags == ["home"] and "Planted six." in org.text
    assert "#+DATE" not in org.text

    html = reader_for("p.html").read(
        b"<html><head><title>Recipe</title><meta name='date' content='2024-05-01'>"
        b"<style>p{}</style><script>alert(1)</script></head><body><h2>Soup</h2>"
        b"<p>Leek &amp; potato.</p></body></html>", "p.html")
    assert html.title == "Recipe" and html.date == date(2024, 5, 1)
    assert "## Soup" in html.text and "Leek & potato." in html.text
    assert "alert" not in html.text and "p{}" not in html.text

    pdf = reader_for("a.pdf").read(make_pdf(["Minutes of the board", "Budget approved"]), "a.pdf")
    assert "Budget approved" in pdf.text

    docx = reader_for("d.docx").read(make_docx([("2024-03-05", "Heading 2"),
                                                ("Met Anna for lunch.", None)]), "d.docx")
    assert "## 2024-03-05" in docx.text and "Met Anna for lunch." in docx.text
    entries = assign_entries(docx, "d.docx", int(MTIME))
    assert entries[0].date == date(2024, 3, 5) and entries[0].date_rule == "heading"

    export = {"metadata": {"version": "1.0"}, "entries": [
        {"creationDate": "2024-03-05T23:30:00Z", "timeZone": "America/New_York",
         "text": "Evening walk\\. Saw the moon\\!\n![](dayone-moment://ABC)", "tags": ["walk"]},
        {"creationDate": "2024-03-04T08:00:00Z", "text": "Morning coffee."},
        {"creationDate": "2024-03-06T08:00:00Z", "text": "   "},
    ]}
    entries = entries_of("Journal.json", json.dumps(export).encode())
    assert [e.text.strip() for e in entries] == ["Morning coffee.", "Evening walk. Saw the moon!"]
    assert entries[1].date == date(2024, 3, 5)  # 23:30 UTC is still the 5th in New York
    assert entries[1].date_rule == "dayone" and entries[1].tags == ["walk"]


# -- bad input ---------------------------------------------------------------
@pytest.mark.parametrize("data, encoding, text", [
    ("héllo wörld".encode(), "utf-8", "héllo wörld"),
    (codecs.BOM_UTF8 + "héllo".encode(), "utf-8-sig", "héllo"),
    (codecs.BOM_UTF16_LE + "héllo".encode("utf-16-le"), "utf-16", "héllo"),
    (codecs.BOM_UTF16_BE + "héllo".encode("utf-16-be"), "utf-16", "héllo"),
    ("café – naïve".encode("cp1252"), "cp1252", "café – naïve"),
    (b"line one\r\nline two\r\n", "utf-8", "line one\nline two\n"),
])
def test_decoding_by_bom_utf8_then_cp1252(data, encoding, text):
    assert decode_text(data) == (text, encoding)


@pytest.mark.parametrize("name, data, reason", [
    ("fake.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary"),
    ("fake.pdf", b"this is not a pdf at all", "not a PDF"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", "PDF"),
    ("fake.docx", b"plain text pretending", "not a DOCX"),
    ("zip.docx", b"PK\x03\x04garbage-zip", "unreadable DOCX"),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "encrypted"),
    ("notes.json", b'{"a": 1}', "not a Day One export"),
    ("bad.json", b'{"entries": [', "invalid JSON"),
])
def test_bad_files_are_skipped_with_a_reason(name, data, reason):
    with pytest.raises(SkipFile, match=reason):
        reader_for(name).read(data, name)


def test_encrypted_pdf_is_skipped():
    with pytest.raises(SkipFile, match="encrypted PDF"):
        reader_for("e.pdf").read(make_encrypted_pdf(["secret"]), "e.pdf")


# -- chunking ----------------------------------------------------------------
def test_chunks_tile_the_text_and_respect_the_size():
    short = "\n\n".join(f"Paragraph {i}. " + "word " * (5 + i % 20) for i in range(60)) + "\n"
    spans = chunk_spans(short, max_chars=400)
    assert "".join(short[a:b] for a, b in spans) == short
    assert all(b - a <= 400 for a, b in spans) and len(spans) > 5
    # Paragraphs shorter than a chunk are never cut in the middle.
    assert all(short[a:b].endswith("\n\n") for a, b in spans[:-1])

    long = "Intro.\n\n" + " ".join(f"Sentence number {i} is here." for i in range(200))
    spans = chunk_spans(long, max_chars=400)
    assert "".join(long[a:b] for a, b in spans) == long
    # A paragraph longer than a chunk is cut at sentence ends.
    assert all(long[a:b].rstrip().endswith(".") for a, b in spans)


def test_a_line_of_megabytes_is_cut_without_trouble():
    text = "x" * 2_000_000 + " tail"
    started = time.perf_counter()
    spans = chunk_spans(text)
    assert time.perf_counter() - started < 5
    assert "".join(text[a:b] for a, b in spans) == text
    assert max(b - a for a, b in spans) <= 800
